/**
 * `make performance-report`: the newest like-for-like result per level in loadtest/results/ side
 * by side, as performance-report.md plus Vega-Lite SVG charts next to it (loadtest/charts.ts). Runs nothing itself
 * unless --run is given, which first runs quick loads of levels 1-3.
 *
 *   npx tsx loadtest/report.ts [--run] [--results-dir DIR]
 */
import { spawnSync } from 'node:child_process';
import { mkdirSync, readdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { parseArgs } from 'node:util';
import { DEFAULT_RESULTS_DIR, LOADTEST_DIR, type RunResult } from './config.js';
import { buildReport } from './performance-report.js';

const { values: args } = parseArgs({
  options: {
    run: { type: 'boolean', default: false },
    'results-dir': { type: 'string', default: DEFAULT_RESULTS_DIR },
  },
});
const dir = resolve(args['results-dir'] ?? DEFAULT_RESULTS_DIR);
mkdirSync(dir, { recursive: true });

if (args.run) {
  for (const level of [1, 2, 3]) {
    // A missed threshold still produces a result worth charting; the report goes on.
    spawnSync(
      process.execPath,
      [
        '--import',
        'tsx',
        join(LOADTEST_DIR, 'run.ts'),
        '--level',
        String(level),
        '--quick',
        '--results-dir',
        dir,
      ],
      { stdio: 'inherit' },
    );
  }
}

/** Every result in the directory; comparableSets picks which may stand side by side. */
function allResults(): RunResult[] {
  return readdirSync(dir)
    .filter((n) => /^level-\d-.*\.json$/.test(n))
    .map((name) => JSON.parse(readFileSync(join(dir, name), 'utf8')) as RunResult);
}

const report = await buildReport(allResults(), dir);
if (!report) {
  console.error(`no level-N-*.json results in ${dir}; run \`make load-test\` first (or pass --run)`);
  process.exit(1);
}
for (const [name, svg] of report.charts) writeFileSync(join(dir, name), svg);
writeFileSync(join(dir, 'performance-report.md'), report.markdown);
console.log(`wrote ${join(dir, 'performance-report.md')} and ${[...report.charts.keys()].join(', ')}`);
