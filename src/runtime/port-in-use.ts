/**
 * "Port already in use" as one clear line instead of a stack trace, the same at every level: a
 * single process says it and exits; a cluster worker exits with EXIT_PORT_IN_USE and its primary,
 * which knows no worker can bind either, says it once and gives up instead of restarting them.
 */
import type { Server } from 'node:net';
import type { Logger } from 'pino';

/** Exit status of a process that could not bind its port (EADDRINUSE is errno 98 on Linux). */
export const EXIT_PORT_IN_USE = 98;

export function isAddressInUse(error: unknown): boolean {
  return (error as { code?: unknown } | null)?.code === 'EADDRINUSE';
}

export function portInUseMessage(port: number, setting: string): string {
  return `port ${port} is already in use by another process: stop it, or set ${setting} to a free port`;
}

/** Log the one line (with the port and the setting as fields) and exit EXIT_PORT_IN_USE. */
export function exitPortInUse(logger: Logger, port: number, setting: string): never {
  logger.fatal({ port, setting }, portInUseMessage(port, setting));
  process.exit(EXIT_PORT_IN_USE);
}

/** Listen, or exit with the one line when the port is taken. */
export async function listenOrExit(
  server: Server,
  port: number,
  host: string,
  setting: string,
  logger: Logger,
): Promise<void> {
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(port, host, () => {
      server.off('error', reject);
      resolve();
    });
  }).catch((error: unknown) => {
    if (isAddressInUse(error)) exitPortInUse(logger, port, setting);
    throw error;
  });
}
