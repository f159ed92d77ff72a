/**
 * The start of every container test file: whether it can run (else a printed reason to skip), decided
 * at import, and the engine itself, started in beforeAll (it may wait for another file to release it).
 */
import { type Engine, ownEngineSkipReason, startEngine } from './docker-engine.js';

export interface ContainerTest {
  skip?: string;
  startEngine(): Promise<Engine>;
}

export async function containerTest(file: string): Promise<ContainerTest> {
  const skip =
    process.env.CONTAINER_TEST_ENGINE === 'system' ? (await startEngine()).skip : ownEngineSkipReason();
  if (skip) process.stdout.write(`[${file}] container tests skipped: ${skip}\n`);
  return {
    skip,
    startEngine: async () => {
      const started = await startEngine();
      if (!started.engine) throw new Error(`no Docker engine: ${started.skip}`);
      return started.engine;
    },
  };
}
