import { type ChildProcess, spawn } from 'node:child_process';
import { closeSync, openSync, readFileSync } from 'node:fs';

export interface ChildOptions {
  cwd: string;
  /** The whole environment of the child: nothing is inherited implicitly. */
  env: Record<string, string>;
  /** Run as this user and group (the tests run as root; the image runs as `node`, uid 1000). */
  uid?: number;
  gid?: number;
  /**
   * Send stdout and stderr to these files instead of pipes. Node's pipes are sockets, and a program
   * that opens /dev/stdout itself (nginx's `access_log /dev/stdout`) cannot open a socket that way.
   */
  outputFiles?: { stdout: string; stderr: string };
}

export interface Exit {
  code: number | null;
  signal: NodeJS.Signals | null;
}

export interface Child {
  child: ChildProcess;
  stdout: () => string;
  stderr: () => string;
  exited: Promise<Exit>;
  /** Send a signal (once) and wait for the exit; SIGKILL after killAfterMs if it is still running. */
  stop(signal?: NodeJS.Signals, killAfterMs?: number): Promise<Exit>;
}

/** Start any command as a child process and keep what it prints. */
export function startChild(command: string, args: string[], options: ChildOptions): Child {
  const files = options.outputFiles;
  const fds = files ? [openSync(files.stdout, 'a'), openSync(files.stderr, 'a')] : [];
  const child = spawn(command, args, {
    cwd: options.cwd,
    env: options.env,
    uid: options.uid,
    gid: options.gid,
    stdio: files ? ['ignore', fds[0] as number, fds[1] as number] : ['ignore', 'pipe', 'pipe'],
  });
  for (const fd of fds) closeSync(fd);
  let stdout = '';
  let stderr = '';
  child.stdout?.on('data', (chunk: Buffer) => {
    stdout += chunk.toString('utf8');
  });
  child.stderr?.on('data', (chunk: Buffer) => {
    stderr += chunk.toString('utf8');
  });
  const exited = new Promise<Exit>((resolve) => {
    child.once('exit', (code, signal) => resolve({ code, signal }));
    child.once('error', (error) => {
      stderr += String(error);
      resolve({ code: -1, signal: null });
    });
  });
  const running = () => child.exitCode === null && child.signalCode === null;
  return {
    child,
    stdout: () => (files ? readFileSync(files.stdout, 'utf8') : stdout),
    stderr: () => (files ? readFileSync(files.stderr, 'utf8') + stderr : stderr),
    exited,
    stop: async (signal: NodeJS.Signals = 'SIGTERM', killAfterMs = 20_000) => {
      if (running()) child.kill(signal);
      const timer = setTimeout(() => {
        if (running()) child.kill('SIGKILL');
      }, killAfterMs);
      const exit = await exited;
      clearTimeout(timer);
      return exit;
    },
  };
}

/** Run a command to completion (bounded) and return its exit and output. */
export async function runToExit(
  command: string,
  args: string[],
  options: ChildOptions,
  timeoutMs: number,
): Promise<Exit & { stdout: string; stderr: string }> {
  const started = startChild(command, args, options);
  const timer = setTimeout(() => started.child.kill('SIGKILL'), timeoutMs);
  const exit = await started.exited;
  clearTimeout(timer);
  return { ...exit, stdout: started.stdout(), stderr: started.stderr() };
}

/** Lines of pino JSON output (other lines are skipped). */
export function jsonLines(text: string): Array<Record<string, unknown>> {
  const lines: Array<Record<string, unknown>> = [];
  for (const line of text.split('\n')) {
    if (!line.startsWith('{')) continue;
    try {
      lines.push(JSON.parse(line) as Record<string, unknown>);
    } catch {
      // a partial line at the end of the buffer
    }
  }
  return lines;
}
