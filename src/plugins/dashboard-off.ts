/**
 * Where the jobs dashboard lives, and what that path answers while the dashboard is off: a 404
 * problem saying how to turn it on (as the task routes do), not a bare "no route". No bull-board
 * code loads here.
 */
import type { FastifyInstance, FastifyReply, FastifyRequest } from 'fastify';
import type { Settings } from '../settings.js';
import { sendProblem } from './errors.js';
import { problem } from './problem.js';

export const DASHBOARD_PATH = '/admin/queues';

/** Why the dashboard is off and what to set, from the settings that switch it on. */
export function dashboardOffDetail(
  settings: Pick<Settings, 'ENABLE_BACKGROUND_TASKS' | 'BULL_BOARD_USER'>,
): string {
  const missing = [
    ...(settings.BULL_BOARD_USER
      ? []
      : ['BULL_BOARD_USER and BULL_BOARD_PASSWORD (in .env for development)']),
    ...(settings.ENABLE_BACKGROUND_TASKS ? [] : ['ENABLE_BACKGROUND_TASKS=true (or LEVEL=4)']),
  ];
  return `The jobs dashboard is off on this deployment: set ${missing.join(' and ')}, then restart`;
}

export async function dashboardOffRoutes(app: FastifyInstance, settings: Settings): Promise<void> {
  const detail = dashboardOffDetail(settings);
  const off = { schema: { hide: true } };
  const answer = (request: FastifyRequest, reply: FastifyReply) =>
    sendProblem(reply, request, problem(404, detail));
  app.get(DASHBOARD_PATH, off, answer);
  app.get(`${DASHBOARD_PATH}/*`, off, answer);
}
