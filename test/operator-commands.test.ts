import { execFile } from 'node:child_process';
import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { describe, expect, it } from 'vitest';
import { type StatusSnapshot, statusReport, type WorkerRow } from '../src/runtime/status-report.js';
import { startCluster } from './helpers/cluster.js';
import { createTestDatabase } from './helpers/database.js';
import { ROOT } from './helpers/process.js';

const exec = promisify(execFile);

/** Run a make target with its output piped (not a terminal), as CI and log collectors see it. */
async function make(args: string[]): Promise<{ code: number; stdout: string; stderr: string }> {
  try {
    const { stdout, stderr } = await exec('make', ['--no-print-directory', ...args], { cwd: ROOT });
    return { code: 0, stdout, stderr };
  } catch (error) {
    const failed = error as { code: number; stdout: string; stderr: string };
    return { code: failed.code, stdout: failed.stdout, stderr: failed.stderr };
  }
}

/**
 * The recipe's own lines: make's trailer ("make: *** [...] Error 1", or "make[1]: ***" when the suite
 * itself runs under `make test`) is make's, not ours.
 */
const recipeLines = (output: string) =>
  output.split('\n').filter((line) => line !== '' && !/^make(\[\d+\])?: \*\*\*/.test(line));

describe('make help', () => {
  it('aligns every description after the longest target name, with no colour codes in a pipe', async () => {
    const { code, stdout } = await make(['help']);
    expect(code).toBe(0);
    expect(stdout).not.toContain('\u001b[');
    const rows = stdout.split('\n').filter(Boolean);
    expect(rows.map((row) => row.trim().split(/\s+/)[0])).toContain('performance-report');
    const columns = rows.map((row) => /^ {2}\S+\s+/.exec(row)?.[0].length);
    expect(new Set(columns).size).toBe(1);
    for (const row of rows) expect(row).toMatch(/^ {2}\S+ {2,}\S/);
  });
});

describe.each([
  ['reload', 'HUP'],
  ['scale-up', 'TTIN'],
  ['scale-down', 'TTOU'],
])('make %s without a running server', (target) => {
  const dir = mkdtempSync(join(tmpdir(), 'pidfile-'));

  it('says in one line that no PID file exists, naming it, and fails', async () => {
    const pidFile = join(dir, 'missing.pid');
    const { code, stdout, stderr } = await make([target, `PID_FILE=${pidFile}`]);
    expect(code).not.toBe(0);
    const lines = recipeLines(stdout + stderr);
    expect(lines).toHaveLength(1);
    expect(lines[0]).toContain('no server is running');
    expect(lines[0]).toContain(pidFile);
  });

  it('says in one line that the PID file is stale, and fails', async () => {
    const pidFile = join(dir, 'stale.pid');
    writeFileSync(pidFile, '2147483646\n'); // above Linux's pid_max: never a live process
    const { code, stdout, stderr } = await make([target, `PID_FILE=${pidFile}`]);
    expect(code).not.toBe(0);
    const lines = recipeLines(stdout + stderr);
    expect(lines).toHaveLength(1);
    expect(lines[0]).toMatch(/no server is running.*2147483646.*stale/);
    expect(lines[0]).toContain(pidFile);
  });
});

describe('make status', () => {
  const row = (state: string, extra: Partial<WorkerRow> = {}): WorkerRow => ({
    worker: 1,
    pid: 4242,
    generation: 1,
    state,
    ageSeconds: 1,
    requestsServed: 0,
    rssBytes: 100 * 1048576,
    ...extra,
  });
  const snapshot = (writtenAt: number, workers: WorkerRow[]): StatusSnapshot => ({
    pid: 4241,
    level: 3,
    desired: workers.length,
    workers,
    writtenAt,
  });
  const now = Date.parse('2026-12-03T12:00:00Z');

  it('shows the snapshot age, and utilisation only once measured', () => {
    const report = statusReport(
      snapshot(now - 400, [row('ready'), row('ready', { worker: 2, eventLoopUtilization: 0.125 })]),
      now,
      true,
    );
    expect(report.exitCode).toBe(0);
    expect(report.lines[0]).toBe('primary pid 4241, LEVEL=3, snapshot 0.4 s old (2026-12-03T11:59:59.600Z)');
    const [first, second] = report.lines.filter((line) => /^[12] /.test(line));
    expect(first?.split(/\s+/).at(-1)).toBe('-');
    expect(second?.split(/\s+/).at(-1)).toBe('0.13');
  });

  it('reports a dead primary as such, never its last workers as current, and fails', () => {
    const report = statusReport(snapshot(now - 60_000, [row('booting')]), now, false);
    expect(report.exitCode).toBe(1);
    expect(report.lines).toHaveLength(1);
    expect(report.lines[0]).toMatch(/^primary pid 4241 is not running .*60\.0 s old/);
    expect(report.lines.join('\n')).not.toContain('booting');
  });

  it('marks a snapshot the live primary stopped updating as stale, and fails', () => {
    const report = statusReport(snapshot(now - 12_000, [row('ready')]), now, true);
    expect(report.exitCode).toBe(1);
    expect(report.lines[1]).toMatch(/^STALE:/);
  });

  it('after kill -9 of a real primary: says it is not running and exits non-zero', async () => {
    const pidFile = join(mkdtempSync(join(tmpdir(), 'status-')), 'server.pid');
    const database = await createTestDatabase();
    const server = await startCluster({
      LEVEL: '3',
      WORKERS: '1',
      PID_FILE: pidFile,
      DATABASE_URL: database.url,
    });
    try {
      const statusOf = () =>
        exec(process.execPath, ['dist/runtime/status.js'], {
          cwd: ROOT,
          env: { PATH: process.env.PATH ?? '', PID_FILE: pidFile },
        }).then(
          ({ stdout }) => ({ code: 0, stdout }),
          (error: { code: number; stdout: string }) => ({ code: error.code, stdout: error.stdout }),
        );
      // The status file is written once a second: wait for the first one.
      let live = await statusOf();
      for (let attempt = 0; attempt < 50 && live.code !== 0; attempt += 1) {
        await new Promise((resolve) => setTimeout(resolve, 200));
        live = await statusOf();
      }
      expect(live.code).toBe(0);
      expect(live.stdout).toMatch(/snapshot \d+\.\d s old/);
      expect(live.stdout).not.toMatch(/\s1$/m); // no start-up "elu 1"
      server.child.kill('SIGKILL');
      await server.exited;
      const dead = await statusOf();
      expect(dead.code).toBe(1);
      expect(dead.stdout).toMatch(/is not running/);
      expect(dead.stdout).not.toMatch(/booting|ready/);
    } finally {
      server.child.kill('SIGKILL');
      await database.drop();
    }
  });
});
