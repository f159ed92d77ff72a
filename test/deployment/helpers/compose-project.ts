/**
 * The shipped docker-compose.yml as one compose project on the test engine: its own project name, host
 * ports from the *_HOST_PORT variables (free ports), the image built beforehand (`up --no-build`), and
 * an empty env file in place of the checkout's .env, so a developer's .env never changes what runs:
 * only `env` and the engine's environment reach the file's ${VARIABLE}s, as on a fresh checkout.
 */
import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { ROOT } from '../../helpers/process.js';
import type { Engine } from './docker-engine.js';

export interface ComposeProject {
  name: string;
  env: Record<string, string>;
  run(args: string[], env?: Record<string, string>): Promise<string>;
  /** Container ids of a service (stopped ones too). */
  containers(service: string): Promise<string[]>;
  down(): Promise<void>;
}

export function composeProject(engine: Engine, name: string, env: Record<string, string>): ComposeProject {
  const emptyEnvFile = join(mkdtempSync(join(tmpdir(), 'compose-env-')), 'empty.env');
  writeFileSync(emptyEnvFile, '');
  const files = [
    '--env-file',
    emptyEnvFile,
    '--file',
    join(ROOT, 'docker-compose.yml'),
    '--project-directory',
    ROOT,
  ];
  const run = async (args: string[], extra: Record<string, string> = {}) =>
    (await engine.compose(name, [...files, ...args], { ...env, ...extra })).stdout;
  const profiles = ['--profile', 'proxy', '--profile', 'monitoring'];
  return {
    name,
    env,
    run,
    containers: async (service) =>
      (await run([...profiles, 'ps', '--all', '--quiet', service])).split('\n').filter(Boolean),
    down: async () => {
      await run([...profiles, 'down', '--volumes', '--remove-orphans', '--timeout', '5']);
    },
  };
}
