/** `make status`: the workers of a running cluster, from the status file its primary keeps beside PID_FILE. */
import { readFileSync } from 'node:fs';
import { loadSettingsOrExit } from './startup.js';

interface Pool {
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

interface Status extends Pool {
  pid: number;
  level: number;
  tasks?: Pool;
}

const settings = loadSettingsOrExit();
const path = `${settings.PID_FILE || '.data/server.pid'}.status.json`;
let status: Status;
try {
  status = JSON.parse(readFileSync(path, 'utf8')) as Status;
} catch {
  console.error(
    `No cluster status at ${path}: is a server started with \`make run LEVEL=2\`, 3 or 4 running?`,
  );
  process.exit(1);
}

function printPool(title: string, pool: Pool): void {
  console.log(`\n${title}: ${pool.workers.length} running (keeping ${pool.desired})`);
  const rows = [...pool.workers]
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
  const header = ['worker', 'pid', 'gen', 'state', 'age', 'served', 'rss', 'elu'];
  const widths = header.map((cell, column) =>
    Math.max(cell.length, ...rows.map((row) => String(row[column]).length)),
  );
  for (const row of [header, ...rows]) {
    console.log(row.map((cell, column) => String(cell).padEnd(widths[column] ?? 0)).join('  '));
  }
}

console.log(`primary pid ${status.pid}, LEVEL=${status.level}`);
printPool('HTTP workers', status);
if (status.tasks) printPool('task workers (jobs served)', status.tasks);
