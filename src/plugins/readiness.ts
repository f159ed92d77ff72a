import type { FastifyInstance } from 'fastify';
import fp from 'fastify-plugin';

/**
 * Resolves when the dependency answers, optionally with a detail (which server answered) and a
 * warning (up, but misconfigured); throws when not.
 */
export type ReadinessCheck = () => Promise<string | { detail?: string; warning?: string } | undefined>;

export interface CheckResult {
  status: 'up' | 'down';
  latencyMs: number;
  detail?: string;
  error?: string;
  warning?: string;
}

declare module 'fastify' {
  interface FastifyInstance {
    readinessChecks: Map<string, ReadinessCheck>;
  }
}

/** Dependencies register how to probe themselves; /health/ready runs every probe in parallel. */
export function addReadinessCheck(app: FastifyInstance, name: string, check: ReadinessCheck): void {
  app.readinessChecks.set(name, check);
}

export async function runChecks(
  checks: Map<string, ReadinessCheck>,
  timeoutMs: number,
): Promise<Record<string, CheckResult>> {
  const entries = await Promise.all(
    [...checks].map(async ([name, check]): Promise<[string, CheckResult]> => {
      const started = performance.now();
      let timer: NodeJS.Timeout | undefined;
      try {
        const answer = await Promise.race<Awaited<ReturnType<ReadinessCheck>>>([
          check(),
          new Promise((_, reject) => {
            timer = setTimeout(() => reject(new Error(`no answer within ${timeoutMs} ms`)), timeoutMs);
          }),
        ]);
        const latencyMs = Math.round(performance.now() - started);
        const { detail, warning }: { detail?: string; warning?: string } =
          typeof answer === 'string' ? { detail: answer } : (answer ?? {});
        return [
          name,
          { status: 'up', latencyMs, ...(detail ? { detail } : {}), ...(warning ? { warning } : {}) },
        ];
      } catch (error) {
        const message = error instanceof Error ? error.message : String(error);
        return [name, { status: 'down', latencyMs: Math.round(performance.now() - started), error: message }];
      } finally {
        clearTimeout(timer);
      }
    }),
  );
  return Object.fromEntries(entries);
}

export default fp(
  async (app: FastifyInstance) => {
    app.decorate('readinessChecks', new Map());
  },
  { name: 'readiness' },
);
