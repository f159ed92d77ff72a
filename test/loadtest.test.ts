import { spawn } from 'node:child_process';
import {
  copyFileSync,
  existsSync,
  mkdtempSync,
  readdirSync,
  readFileSync,
  rmSync,
  writeFileSync,
} from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { RunResult } from '../loadtest/config.js';
import { createTestDatabase, type TestDatabase } from './helpers/database.js';
import { ROOT } from './helpers/process.js';

interface Outcome {
  code: number | null;
  stdout: string;
  stderr: string;
}

function runScript(script: string, args: string[], env: Record<string, string> = {}): Promise<Outcome> {
  return new Promise((done) => {
    const child = spawn(process.execPath, ['--import', 'tsx', join(ROOT, script), ...args], {
      cwd: ROOT,
      env: { ...process.env, NODE_ENV: 'test', LOADTEST_RUNNER: 'autocannon', ...env },
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (chunk: Buffer) => {
      stdout += chunk.toString('utf8');
    });
    child.stderr.on('data', (chunk: Buffer) => {
      stderr += chunk.toString('utf8');
    });
    child.once('exit', (code) => done({ code, stdout, stderr }));
  });
}

/** A strict enough XML well-formedness check: every tag closes in order, one root element. */
function assertWellFormedXml(text: string): void {
  const body = text.replace(/<\?xml[^>]*\?>/, '').replace(/<!--[\s\S]*?-->/g, '');
  const stack: string[] = [];
  let roots = 0;
  for (const match of body.matchAll(/<(\/?)([A-Za-z][\w:-]*)((?:\s+[\w:-]+="[^"<]*")*)\s*(\/?)>/g)) {
    const [, closing, name, , selfClosing] = match;
    if (closing) {
      expect(stack.pop(), `</${name}> closes the wrong element`).toBe(name);
    } else if (!selfClosing) {
      if (stack.length === 0) roots += 1;
      stack.push(name as string);
    } else if (stack.length === 0) roots += 1;
  }
  expect(stack).toEqual([]);
  expect(roots).toBe(1);
  // Every '<' starts a tag we parsed; stray '&' must be an entity.
  expect(body.replace(/<(\/?)([A-Za-z][\w:-]*)((?:\s+[\w:-]+="[^"<]*")*)\s*(\/?)>/g, '')).not.toMatch(/</);
  expect(body).not.toMatch(/&(?!(amp|lt|gt|quot|apos|#\d+);)/);
}

describe('load test runner (autocannon fallback) and report', () => {
  let database: TestDatabase;
  let resultsDir: string;

  beforeAll(async () => {
    database = await createTestDatabase();
    resultsDir = mkdtempSync(join(tmpdir(), 'loadtest-results-'));
  });

  afterAll(async () => {
    await database?.drop();
    if (resultsDir) rmSync(resultsDir, { recursive: true, force: true });
  });

  it('runs a quick LEVEL=1 load, prints the table and writes JSON and Markdown', async () => {
    const outcome = await runScript(
      'loadtest/run.ts',
      [
        '--level',
        '1',
        '--quick',
        '--duration',
        '2',
        '--results-dir',
        resultsDir,
        '--p95-ms',
        '5000',
        '--p99-ms',
        '10000',
      ],
      { DATABASE_URL: database.url },
    );
    expect(outcome.code, `${outcome.stdout}\n${outcome.stderr}`).toBe(0);
    expect(outcome.stdout).toContain('all thresholds met');
    expect(outcome.stdout).toMatch(/\| hash \|/);
    expect(outcome.stderr).toMatch(/\[\d+s\/2s\] \d+ responses/); // progress while running

    const json = readdirSync(resultsDir).filter((name) => /^level-1-.*\.json$/.test(name));
    expect(json).toHaveLength(1);
    const result = JSON.parse(readFileSync(join(resultsDir, json[0] as string), 'utf8')) as RunResult;
    expect(result.runner).toBe('autocannon');
    expect(result.passed).toBe(true);
    expect(result.routes.map((r) => r.name)).toEqual([
      'health',
      'items-list',
      'item-get',
      'item-create',
      'hash',
      'sleep',
    ]);
    for (const route of result.routes) {
      expect(route.requests, route.name).toBeGreaterThan(0);
      expect(route.errors, route.name).toBe(0);
      expect(route.p99Ms, route.name).toBeGreaterThanOrEqual(route.p50Ms);
    }
    // quick mode asks for 20/s; an open model should deliver close to that, not thousands.
    expect(result.total.throughput).toBeGreaterThan(8);
    expect(result.total.throughput).toBeLessThan(40);
    expect(result.routes.find((r) => r.name === 'sleep')?.p50Ms).toBeGreaterThanOrEqual(50);
    expect(existsSync(join(resultsDir, (json[0] as string).replace(/\.json$/, '.md')))).toBe(true);
  }, 90_000);

  it('exits non-zero and names the threshold it missed', async () => {
    const failDir = mkdtempSync(join(tmpdir(), 'loadtest-fail-'));
    try {
      const outcome = await runScript(
        'loadtest/run.ts',
        ['--level', '1', '--quick', '--duration', '1', '--results-dir', failDir, '--p99-ms', '0.001'],
        { DATABASE_URL: database.url },
      );
      expect(outcome.code).toBe(1);
      expect(outcome.stdout).toContain('THRESHOLDS MISSED');
      expect(outcome.stdout).toMatch(/total: p99 [\d.]+ ms > 0\.001 ms/);
      const [json] = readdirSync(failDir).filter((name) => name.endsWith('.json'));
      const result = JSON.parse(readFileSync(join(failDir, json as string), 'utf8')) as RunResult;
      expect(result.passed).toBe(false);
    } finally {
      rmSync(failDir, { recursive: true, force: true });
    }
  }, 90_000);

  it('writes the performance report with every level in each Vega chart', async () => {
    // Levels 2 and 3 are derived from the real LEVEL=1 result so the report has three levels to chart.
    const [json] = readdirSync(resultsDir).filter((name) => /^level-1-.*\.json$/.test(name));
    const level1 = JSON.parse(readFileSync(join(resultsDir, json as string), 'utf8')) as RunResult;
    for (const level of [2, 3]) {
      const derived: RunResult = {
        ...level1,
        level,
        total: { ...level1.total, throughput: level1.total.throughput * level },
      };
      writeFileSync(
        join(resultsDir, `level-${level}-2026-01-01T00-00-00-000Z.json`),
        JSON.stringify(derived),
      );
    }
    // An older LEVEL=1 file must lose to the newest one.
    copyFileSync(join(resultsDir, json as string), join(resultsDir, 'level-1-2000-01-01T00-00-00-000Z.json'));

    const outcome = await runScript('loadtest/report.ts', ['--results-dir', resultsDir]);
    expect(outcome.code, outcome.stderr).toBe(0);
    const report = readFileSync(join(resultsDir, 'performance-report.md'), 'utf8');
    expect(report).toContain('LEVEL=1');
    expect(report).toContain('LEVEL=3');
    expect(report).toContain(level1.startedAt);
    // The real LEVEL=1 run recorded per-second samples; each level gets its over-time chart.
    expect(level1.perSecond?.length ?? 0).toBeGreaterThanOrEqual(level1.duration);
    const charts = ['latency-percentiles.svg', 'throughput.svg', 'errors.svg'];
    for (const svg of [
      ...charts,
      'over-time-level-1.svg',
      'over-time-level-2.svg',
      'over-time-level-3.svg',
    ]) {
      expect(report).toContain(`](${svg})`);
      const text = readFileSync(join(resultsDir, svg), 'utf8');
      assertWellFormedXml(text);
      expect(text, svg).toContain('role-axis');
    }
    for (const svg of charts) {
      const text = readFileSync(join(resultsDir, svg), 'utf8');
      for (const level of [1, 2, 3])
        expect(text, `${svg} level ${level}`).toContain(`>LEVEL=${level}</text>`);
    }
  }, 90_000);
});
