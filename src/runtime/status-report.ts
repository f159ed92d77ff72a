/**
 * What `make status` prints, decided from the primary's snapshot file, the time and whether the
 * primary still runs: pure, so every case (fresh, stale, dead primary) has a unit test.
 */

export interface WorkerRow {
  worker: number;
  pid: number;
  generation: number;
  state: string;
  waitingFor?: string;
  ageSeconds: number;
  requestsServed: number;
  rssBytes: number;
  /** Absent until the worker's second heartbeat measured an interval. */
  eventLoopUtilization?: number;
}

interface Pool {
  desired: number;
  workers: WorkerRow[];
}

export interface StatusSnapshot extends Pool {
  pid: number;
  level: number;
  /** Epoch ms when the primary wrote it (once a second). */
  writtenAt?: number;
  tasks?: Pool;
}

/** A snapshot older than this means the primary stopped writing it: hung, or gone. */
export const STALE_AFTER_MS = 5000;

export interface StatusReport {
  lines: string[];
  exitCode: 0 | 1;
}

export function statusReport(snapshot: StatusSnapshot, now: number, primaryAlive: boolean): StatusReport {
  const ageMs = snapshot.writtenAt === undefined ? Number.POSITIVE_INFINITY : now - snapshot.writtenAt;
  const age = Number.isFinite(ageMs) ? `${(ageMs / 1000).toFixed(1)} s old` : 'of unknown age';
  if (!primaryAlive) {
    // Its workers exit with it: the last snapshot describes processes that are gone.
    return {
      lines: [
        `primary pid ${snapshot.pid} is not running (dead or killed); its last snapshot, ${age}, is not shown as current. Start the server again with \`make run LEVEL=${snapshot.level}\`.`,
      ],
      exitCode: 1,
    };
  }
  const stale = !(ageMs <= STALE_AFTER_MS);
  const lines = [
    `primary pid ${snapshot.pid}, LEVEL=${snapshot.level}, snapshot ${age}${
      snapshot.writtenAt === undefined ? '' : ` (${new Date(snapshot.writtenAt).toISOString()})`
    }`,
  ];
  if (stale)
    lines.push(
      `STALE: the primary runs but has not updated its snapshot for over ${STALE_AFTER_MS / 1000} s (hung or overloaded); the figures below are old`,
    );
  lines.push(...poolLines('HTTP workers', snapshot));
  if (snapshot.tasks) lines.push(...poolLines('task workers (jobs served)', snapshot.tasks));
  return { lines, exitCode: stale ? 1 : 0 };
}

function poolLines(title: string, pool: Pool): string[] {
  const rows = [...pool.workers]
    .sort((a, b) => a.worker - b.worker)
    .map((w) => [
      String(w.worker),
      String(w.pid),
      String(w.generation),
      w.waitingFor ? `${w.state} (${w.waitingFor})` : w.state,
      `${w.ageSeconds}s`,
      String(w.requestsServed),
      w.rssBytes > 0 ? `${Math.round(w.rssBytes / 1048576)} MB` : '-',
      // Utilisation needs an interval behind it: "-" until measured, never a start-up "1".
      w.eventLoopUtilization === undefined ? '-' : w.eventLoopUtilization.toFixed(2),
    ]);
  const header = ['worker', 'pid', 'gen', 'state', 'age', 'served', 'rss', 'elu'];
  const widths = header.map((cell, column) =>
    Math.max(cell.length, ...rows.map((row) => row[column]?.length ?? 0)),
  );
  return [
    '',
    `${title}: ${pool.workers.length} running (keeping ${pool.desired})`,
    ...[header, ...rows].map((row) =>
      row
        .map((cell, column) => cell.padEnd(widths[column] ?? 0))
        .join('  ')
        .trimEnd(),
    ),
  ];
}
