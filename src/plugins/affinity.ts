import type { FastifyInstance } from 'fastify';
import fp from 'fastify-plugin';

/** Cookie the nginx template hashes on (deployment/nginx/affinity/true.conf) when SESSION_AFFINITY=true. */
export const AFFINITY_COOKIE = 'lb_affinity';
const HAS_AFFINITY_COOKIE = new RegExp(`(?:^|;\\s*)${AFFINITY_COOKIE}=[^;]`);

/** True when a Cookie header already carries the affinity cookie. */
export function hasAffinityCookie(cookieHeader: string | undefined): boolean {
  return cookieHeader !== undefined && HAS_AFFINITY_COOKIE.test(cookieHeader);
}

/**
 * Sticky sessions for load balancers that cannot set a cookie themselves (nginx without Plus). nginx
 * hashes a new client's first request on its request id and passes that id on as X-Request-Id; the
 * app hands the same id back as the affinity cookie, so the client's next requests hash to the same
 * server as its first one. Traefik sets its own sticky cookie and ignores this one.
 */
async function affinityPlugin(app: FastifyInstance): Promise<void> {
  app.addHook('onRequest', async (request, reply) => {
    if (hasAffinityCookie(request.headers.cookie)) return;
    const secure = request.protocol === 'https' ? '; Secure' : '';
    reply.header('set-cookie', `${AFFINITY_COOKIE}=${request.id}; Path=/; HttpOnly; SameSite=Lax${secure}`);
  });
}

export default fp(affinityPlugin, { name: 'affinity' });
