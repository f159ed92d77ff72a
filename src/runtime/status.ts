/** `make status`: the workers of a running cluster, from the status file its primary keeps beside PID_FILE. */
import { readFileSync } from 'node:fs';
import { loadSettingsOrExit } from './startup.js';
import { type StatusSnapshot, statusReport } from './status-report.js';

const settings = loadSettingsOrExit();
const path = `${settings.PID_FILE || '.data/server.pid'}.status.json`;
let snapshot: StatusSnapshot;
try {
  snapshot = JSON.parse(readFileSync(path, 'utf8')) as StatusSnapshot;
} catch {
  console.error(
    `No cluster status at ${path}: is a server started with \`make run LEVEL=2\`, 3 or 4 running?`,
  );
  process.exit(1);
}

function isAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (error) {
    return (error as NodeJS.ErrnoException).code === 'EPERM'; // alive, owned by another user
  }
}

const report = statusReport(snapshot, Date.now(), isAlive(snapshot.pid));
for (const line of report.lines) console.log(line);
process.exitCode = report.exitCode;
