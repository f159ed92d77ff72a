/**
 * deployment/docker-compose.pgbouncer.yml merged over docker-compose.yml by Docker's own parser
 * (`docker-compose config`, when installed): the app's DATABASE_URL through PgBouncer, migrations
 * direct, and a PgBouncer config that the app can run behind (deployment/pgbouncer/pgbouncer.ini).
 */
import { execFileSync } from 'node:child_process';
import { existsSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { parse } from 'yaml';
import { ROOT } from '../helpers/process.js';

const dockerCompose = ['/usr/bin/docker-compose', '/usr/local/bin/docker-compose'].find((path) =>
  existsSync(path),
);

interface Service {
  environment?: Record<string, string>;
  depends_on?: Record<string, { condition: string }>;
  volumes?: Array<string | { source: string; target: string }>;
}

describe('PgBouncer templates', () => {
  it('pgbouncer.ini: transaction pooling, only the startup parameter node-postgres sends ignored', () => {
    const ini = readFileSync(join(ROOT, 'deployment/pgbouncer/pgbouncer.ini'), 'utf8');
    const value = (key: string) => new RegExp(`^${key}\\s*=\\s*(.*)$`, 'm').exec(ini)?.[1]?.trim();
    expect(value('pool_mode')).toBe('transaction');
    expect(value('ignore_startup_parameters')).toBe('extra_float_digits');
    expect(Number(value('default_pool_size'))).toBeGreaterThan(0);
    expect(value('listen_port')).toBe('6432');
  });

  it.skipIf(!dockerCompose)(
    'compose override: the app through PgBouncer, migrations direct, PgBouncer healthy first',
    () => {
      const rendered = execFileSync(
        dockerCompose as string,
        ['-f', 'docker-compose.yml', '-f', 'deployment/docker-compose.pgbouncer.yml', 'config'],
        { cwd: ROOT, encoding: 'utf8', env: { PATH: process.env.PATH ?? '' } },
      );
      const services = (parse(rendered) as { services: Record<string, Service> }).services;
      for (const name of ['api', 'worker']) {
        const service = services[name] as Service;
        expect(new URL(service.environment?.DATABASE_URL as string).host, name).toBe('pgbouncer:6432');
        expect(service.depends_on?.pgbouncer?.condition, name).toBe('service_healthy');
      }
      const migrate = services.migrate as Service;
      expect(new URL(migrate.environment?.MIGRATIONS_DATABASE_URL as string).host).toBe('postgres:5432');
      const mounts = JSON.stringify(services.pgbouncer?.volumes);
      expect(mounts).toContain('deployment/pgbouncer/pgbouncer.ini');
      expect(mounts).toContain('deployment/pgbouncer/userlist.txt');
    },
  );
});
