/**
 * The yardstick for the template's own cost: a bare Fastify 5 app with the same two routes the
 * bench loads, that logs one pino line per request (info level, JSON to stdout) and nothing else.
 * Runs on Node's own type stripping: `node scripts/bench/bare-app.ts` (PORT, HOST from the env).
 */
import { createHash } from 'node:crypto';
import Fastify, { LogController } from 'fastify';

const app = Fastify({
  logger: { level: 'info' },
  logController: new LogController({ disableRequestLogging: true }),
});

app.addHook('onResponse', async (request, reply) => {
  request.log.info(
    { method: request.method, url: request.url, statusCode: reply.statusCode, ms: reply.elapsedTime },
    'request completed',
  );
});

app.get('/health/live', async () => ({ status: 'ok' }));
app.get(
  '/api/examples/hash',
  {
    schema: {
      querystring: {
        type: 'object',
        properties: { rounds: { type: 'integer', minimum: 1, maximum: 1_000_000, default: 1000 } },
      },
      response: {
        200: {
          type: 'object',
          properties: { rounds: { type: 'integer' }, digest: { type: 'string' } },
        },
      },
    },
  },
  async (request) => {
    const { rounds } = request.query as { rounds: number };
    let digest: Buffer = Buffer.from('node-levels-starter');
    for (let round = 0; round < rounds; round += 1) digest = createHash('sha256').update(digest).digest();
    return { rounds, digest: digest.toString('hex') };
  },
);

await app.listen({ host: process.env.HOST ?? '127.0.0.1', port: Number(process.env.PORT ?? 3000) });
// Exit cleanly on SIGTERM, so `node --cpu-prof` writes its profile.
process.once('SIGTERM', () => void app.close().then(() => process.exit(0)));
