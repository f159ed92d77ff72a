import { Agent, request } from 'undici';

export interface LoadResult {
  ok: number;
  failed: number;
  failures: string[];
  pids: Set<number>;
}

/**
 * Continuous GET load from `connections` parallel clients until stopped: keep-alive, or with
 * `newConnections` a new TCP connection per request (`Connection: close`, as clients without
 * keep-alive do). Every non-2xx answer and every network error counts as a failure.
 */
export function startLoad(
  url: string,
  connections = 8,
  { newConnections = false }: { newConnections?: boolean } = {},
): { stop: () => Promise<LoadResult> } {
  // Bounded timeouts: a request that never gets an answer must count as a failure, not hang the test.
  const agent = new Agent({
    connections,
    keepAliveTimeout: 30_000,
    pipelining: 1,
    headersTimeout: 10_000,
    bodyTimeout: 10_000,
  });
  const result: LoadResult = { ok: 0, failed: 0, failures: [], pids: new Set() };
  let running = true;
  const client = async () => {
    while (running) {
      try {
        const response = await request(url, { dispatcher: agent, reset: newConnections });
        const body = await response.body.text();
        if (response.statusCode >= 200 && response.statusCode < 300) {
          result.ok += 1;
          const pid = (JSON.parse(body) as { pid?: number }).pid;
          if (pid) result.pids.add(pid);
        } else {
          result.failed += 1;
          result.failures.push(`status ${response.statusCode}: ${body.slice(0, 200)}`);
        }
      } catch (error) {
        result.failed += 1;
        result.failures.push(String(error));
      }
    }
  };
  const clients = Array.from({ length: connections }, () => client());
  return {
    stop: async () => {
      running = false;
      await Promise.all(clients);
      await agent.close();
      return result;
    },
  };
}
