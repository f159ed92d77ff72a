/**
 * The project's image, built from the real Dockerfile on the test engine (`docker build --network host`,
 * so its npm ci and apt-get go out as the machine's own do). Layers and the npm cache mount live in the
 * engine's data root, so a warm build only redoes what changed.
 */
import { ROOT } from '../../helpers/process.js';
import { type BaseImage, ensureBaseImage } from './base-images.js';
import type { Engine } from './docker-engine.js';

export const APP_IMAGE = 'node-levels-starter:local';

export interface AppImage {
  tag: string;
  base: BaseImage;
}

let built: Promise<AppImage> | undefined;

/** Build the image once per test process. */
export function buildAppImage(engine: Engine): Promise<AppImage> {
  built ??= (async () => {
    const base = await ensureBaseImage(engine, 'node');
    const started = Date.now();
    await engine.dockerStreamed(['build', '--network', 'host', '--tag', APP_IMAGE, ROOT], 'docker build');
    process.stdout.write(
      `[app-image] ${APP_IMAGE} built in ${Math.round((Date.now() - started) / 1000)} s\n`,
    );
    return { tag: APP_IMAGE, base };
  })();
  return built;
}

/** `docker image inspect` Size in bytes (the uncompressed size of every layer). */
export async function imageSize(engine: Engine, tag: string): Promise<number> {
  const { stdout } = await engine.docker(['image', 'inspect', '--format', '{{.Size}}', tag]);
  return Number(stdout.trim());
}
