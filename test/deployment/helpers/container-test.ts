/** The start of every container test file: the engine, or a printed reason why the file skips. */
import { type Engine, startEngine } from './docker-engine.js';

export async function containerEngine(file: string): Promise<{ engine?: Engine; skip?: string }> {
  const started = await startEngine();
  if (started.skip) process.stdout.write(`[${file}] container tests skipped: ${started.skip}\n`);
  return started;
}
