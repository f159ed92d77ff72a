#!/usr/bin/env bash
# `make reload|scale-up|scale-down`: send SIGNAL to the primary whose pid PID_FILE holds, or say in
# one line why not (no PID file, a stale one, an unreadable pid) and exit 1.
set -u
signal="$1" pid_file="$2" action="$3"
if [ ! -f "$pid_file" ]; then
  echo "$action: no server is running (no PID file at $pid_file; start one with \`make run LEVEL=3\`)" >&2
  exit 1
fi
pid="$(tr -d '[:space:]' <"$pid_file")"
if ! [[ "$pid" =~ ^[0-9]+$ ]]; then
  echo "$action: PID file $pid_file does not hold a pid (\"$pid\")" >&2
  exit 1
fi
if ! kill -0 "$pid" 2>/dev/null; then
  echo "$action: no server is running (PID file $pid_file names pid $pid, which is not running: a stale file)" >&2
  exit 1
fi
kill -"$signal" "$pid" && echo "$action: sent SIG$signal to the primary (pid $pid from $pid_file)"
