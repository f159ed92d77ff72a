import { execFile } from 'node:child_process';
import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { describe, expect, it } from 'vitest';
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

/** The recipe's own lines: make's trailer ("make: *** [...] Error 1") is make's, not ours. */
const recipeLines = (output: string) =>
  output.split('\n').filter((line) => line !== '' && !line.startsWith('make: ***'));

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
