import { readdirSync, readFileSync, readlinkSync } from 'node:fs';

/** Inodes of the TCP sockets listening on `port` (IPv4 and IPv6), from /proc/net. */
export function listeningInodes(port: number): Set<string> {
  const inodes = new Set<string>();
  const hexPort = port.toString(16).toUpperCase().padStart(4, '0');
  for (const table of ['/proc/net/tcp', '/proc/net/tcp6']) {
    let text = '';
    try {
      text = readFileSync(table, 'utf8');
    } catch {
      continue;
    }
    for (const line of text.trim().split('\n').slice(1)) {
      const fields = line.trim().split(/\s+/);
      // local_address is HEXIP:HEXPORT; state 0A is LISTEN; field 9 is the inode.
      if (fields[1]?.endsWith(`:${hexPort}`) && fields[3] === '0A') inodes.add(fields[9] as string);
    }
  }
  return inodes;
}

/**
 * The listening sockets on `port` each of `pids` holds, by inode (the kernel's view, from /proc: no
 * `ss` needed). Two processes holding copies of one socket show the same inode.
 */
export function listenersOn(port: number, pids: number[]): Map<number, Set<string>> {
  const inodes = listeningInodes(port);
  const byPid = new Map<number, Set<string>>();
  for (const pid of pids) {
    let fds: string[] = [];
    try {
      fds = readdirSync(`/proc/${pid}/fd`);
    } catch {
      continue; // gone
    }
    const held = new Set<string>();
    for (const fd of fds) {
      try {
        const match = /^socket:\[(\d+)\]$/.exec(readlinkSync(`/proc/${pid}/fd/${fd}`));
        if (match && inodes.has(match[1] as string)) held.add(match[1] as string);
      } catch {}
    }
    if (held.size > 0) byPid.set(pid, held);
  }
  return byPid;
}
