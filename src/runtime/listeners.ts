/**
 * The worker end of SO_REUSEPORT listening (LISTEN_REUSE_PORT). Each worker owns listening sockets
 * the kernel spreads new connections over. Closing a socket resets the connections still queued in
 * it (unless net.ipv4.tcp_migrate_req=1), so a socket is never closed while it matters: a
 * replacement takes over the sockets of the worker it replaces (both accept from them for a
 * moment), a worker scaled down hands its sockets to a survivor, and the old copies close only
 * once another process holds the socket. A fresh socket is bound only when there is none to take.
 */
import { createServer, type Server } from 'node:net';
import type { FastifyInstance, FastifyListenOptions } from 'fastify';
import { INHERIT_LISTENERS_ENV, isPrimaryMessage } from './protocol.js';
import { sendToPrimary } from './supervisor-link.js';

/** How long a replacement waits for the old worker's sockets before binding its own. */
const INHERIT_TIMEOUT_MS = 5000;

/** A listening socket as passed between processes (libuv TCP handle): `server.listen(handle)` takes it. */
type ListenHandle = object;

const handleOf = (server: Server): ListenHandle | undefined =>
  (server as unknown as { _handle?: ListenHandle | null })._handle ?? undefined;

export interface ReusePortListeners {
  /** Close the adopted sockets; resolves when their connections have ended. */
  close(): Promise<void>;
}

/**
 * Listen with SO_REUSEPORT: on the inherited sockets when this worker replaces another, otherwise
 * on a fresh one. From then on, share copies of every socket on request and adopt forwarded ones.
 */
export async function listenReusePort(
  app: FastifyInstance,
  address: { host: string; port: number },
): Promise<ReusePortListeners> {
  const adopted: Server[] = [];
  // Connections accepted on an adopted socket are served by the app's own HTTP server.
  const adopt = (handle: ListenHandle) => {
    const server = createServer((socket) => app.server.emit('connection', socket));
    server.on('error', (error) => app.log.warn({ err: error }, 'adopted listener failed'));
    server.listen(handle as Parameters<Server['listen']>[0]);
    adopted.push(server);
  };

  const inherited = process.env[INHERIT_LISTENERS_ENV] === '1' ? await inheritListeners() : [];
  const [main, ...rest] = inherited;
  // Fastify passes these to net.Server#listen whole; its types predate `reusePort` (Node 22.12).
  const options: FastifyListenOptions & { reusePort?: boolean; handle?: ListenHandle } = main
    ? { host: address.host, port: address.port, handle: main }
    : { host: address.host, port: address.port, reusePort: true };
  await app.listen(options);
  for (const handle of rest) adopt(handle);
  if (main) app.log.info({ sockets: inherited.length }, 'took over the listeners of the replaced worker');

  let incoming: ListenHandle[] = [];
  process.on('message', (message: unknown, handle: unknown) => {
    if (!isPrimaryMessage(message)) return;
    if (message.type === 'share-listeners') {
      for (const server of [app.server, ...adopted]) {
        const own = handleOf(server);
        if (own) process.send?.({ type: 'listener' }, own as never);
      }
      sendToPrimary({ type: 'listeners-end' });
    } else if (message.type === 'listener' && handle) {
      incoming.push(handle);
    } else if (message.type === 'listeners-end') {
      for (const adoptedHandle of incoming) adopt(adoptedHandle);
      if (incoming.length > 0) app.log.info({ sockets: incoming.length }, 'adopted listeners');
      incoming = [];
      sendToPrimary({ type: 'listeners-adopted' });
    }
  });

  return {
    close: () =>
      Promise.all(
        adopted.map((server) => new Promise<void>((resolve) => server.close(() => resolve()))),
      ).then(() => undefined),
  };
}

/** Ask the primary for the replaced worker's sockets; none (it is gone, or too slow): bind fresh. */
function inheritListeners(): Promise<ListenHandle[]> {
  return new Promise((resolve) => {
    const handles: ListenHandle[] = [];
    const finish = () => {
      clearTimeout(timer);
      process.off('message', onMessage);
      resolve(handles);
    };
    const onMessage = (message: unknown, handle: unknown) => {
      if (!isPrimaryMessage(message)) return;
      if (message.type === 'listener' && handle) handles.push(handle);
      else if (message.type === 'listeners-end') finish();
    };
    const timer = setTimeout(finish, INHERIT_TIMEOUT_MS);
    process.on('message', onMessage);
    sendToPrimary({ type: 'listeners-request' });
  });
}
