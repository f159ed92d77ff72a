import { setTimeout as sleep } from 'node:timers/promises';
import type { Child } from './child.js';

/** Poll a URL until it answers 200; fail at once (with its stderr) if the process exits first. */
export async function waitUntilOk(url: string, process: Child, timeoutMs = 30_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  let exited = false;
  void process.exited.then(() => {
    exited = true;
  });
  let last = '';
  while (Date.now() < deadline) {
    if (exited) {
      throw new Error(
        `process exited before ${url} answered 200\nstdout: ${process.stdout()}\nstderr: ${process.stderr()}`,
      );
    }
    try {
      const response = await fetch(url, { signal: AbortSignal.timeout(2000) });
      await response.arrayBuffer();
      if (response.ok) return;
      last = `status ${response.status}`;
    } catch (error) {
      last = String(error);
    }
    await sleep(100);
  }
  throw new Error(
    `${url} did not answer 200 within ${timeoutMs} ms (${last})\nstdout: ${process.stdout().slice(-3000)}\nstderr: ${process.stderr()}`,
  );
}
