/** `make status`: the workers of a running cluster, from the status file its primary keeps beside PID_FILE. */
import { readFileSync } from 'node:fs';
import { loadSettingsOrExit } from './startup.js';

interface Status {
  pid: number;
  level: number;
  desired: number;
  workers: Array<{
    worker: number;
    pid: number;
    generation: number;
    state: string;
    ageSeconds: number;
    requestsServed: number;
    rssBytes: number;
    eventLoopUtilization: number;
  }>;
}

const settings = loadSettingsOrExit();
const path = `${settings.PID_FILE || '.data/server.pid'}.status.json`;
let status: Status;
try {
  status = JSON.parse(readFileSync(path, 'utf8')) as Status;
} catch {
  console.error(
    `No cluster status at ${path}: is a server started with \`make run LEVEL=2\` or \`LEVEL=3\` running?`,
  );
  process.exit(1);
}

console.log(
  `primary pid ${status.pid}, LEVEL=${status.level}, ${status.workers.length} workers (keeping ${status.desired})`,
);
const rows = status.workers
  .sort((a, b) => a.worker - b.worker)
  .map((w) => [
    w.worker,
    w.pid,
    w.generation,
    w.state,
    `${w.ageSeconds}s`,
    w.requestsServed,
    `${Math.round(w.rssBytes / 1048576)} MB`,
    w.eventLoopUtilization,
  ]);
const header = ['worker', 'pid', 'gen', 'state', 'age', 'requests', 'rss', 'elu'];
const widths = header.map((title, column) =>
  Math.max(title.length, ...rows.map((row) => String(row[column]).length)),
);
for (const row of [header, ...rows])
  console.log(row.map((cell, column) => String(cell).padEnd(widths[column] ?? 0)).join('  '));
