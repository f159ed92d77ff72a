import { timingSafeEqual } from 'node:crypto';
import { createBullBoard } from '@bull-board/api';
import { BullMQAdapter } from '@bull-board/api/bullMQAdapter';
import { FastifyAdapter } from '@bull-board/fastify';
import basicAuth from '@fastify/basic-auth';
import { Queue } from 'bullmq';
import type { FastifyInstance } from 'fastify';
import { createDashboardConnection } from '../redis/connection.js';
import { logUnlessConnectionError, watchConnection } from '../redis/connection-events.js';
import { redisTargetOf } from '../redis/target.js';
import type { Settings } from '../settings.js';
import { QUEUE_NAMES } from '../tasks/queues.js';
import { DASHBOARD_PATH } from './dashboard-off.js';
import { contentSecurityPolicyHook, HTML_CSP_DIRECTIVES } from './security.js';

function safeEqual(given: string, expected: string): boolean {
  const a = Buffer.from(given);
  const b = Buffer.from(expected);
  return a.length === b.length && timingSafeEqual(a, b);
}

/**
 * bull-board on every queue at /admin/queues, behind HTTP basic auth. Registered only when both
 * BULL_BOARD_USER and BULL_BOARD_PASSWORD are set (settings refuse one without the other).
 * An encapsulated plugin: the auth hook covers the dashboard's routes and nothing else.
 */
export async function dashboardPlugin(app: FastifyInstance, settings: Settings): Promise<void> {
  // Its own connection: the dashboard may wait a little for Redis; the API's producer must not.
  const connection = createDashboardConnection(redisTargetOf(settings));
  const log = app.log;
  watchConnection(connection, log, 'dashboard');
  const queues = QUEUE_NAMES.map((name) => {
    const queue = new Queue(name, { connection, prefix: settings.QUEUE_PREFIX });
    // Without a listener BullMQ prints every connection error raw to stderr.
    queue.on('error', logUnlessConnectionError(log, { queue: name }, 'dashboard queue error'));
    return queue;
  });
  const serverAdapter = new FastifyAdapter();
  serverAdapter.setBasePath(DASHBOARD_PATH);
  createBullBoard({
    queues: queues.map((queue) => new BullMQAdapter(queue, { readOnlyMode: settings.BULL_BOARD_READ_ONLY })),
    serverAdapter,
  });

  await app.register(basicAuth, {
    authenticate: { realm: 'queues' },
    validate: async (user, password) => {
      const userOk = safeEqual(user, settings.BULL_BOARD_USER);
      const passwordOk = safeEqual(password, settings.BULL_BOARD_PASSWORD);
      if (!(userOk && passwordOk)) throw new Error('Wrong dashboard credentials');
    },
  });
  app.addHook('onRequest', app.basicAuth);
  // The page's strict CSP, plus the Google Fonts stylesheet bull-board's HTML links (fonts themselves
  // load under helmet's default font-src https:); without it Chromium logs a blocked stylesheet.
  app.addHook(
    'onRequest',
    contentSecurityPolicyHook({
      ...HTML_CSP_DIRECTIVES,
      'style-src': [...HTML_CSP_DIRECTIVES['style-src'], 'https://fonts.googleapis.com'],
    }),
  );
  await app.register(serverAdapter.registerPlugin(), { prefix: DASHBOARD_PATH });
  app.addHook('onClose', async () => {
    await Promise.all(queues.map((queue) => queue.close()));
    connection.disconnect();
  });
}
