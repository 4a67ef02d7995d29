#!/usr/bin/env bash
# quietly.sh WHAT LOG COMMAND...: run COMMAND with all its output in LOG and say one line about
# it ("==> WHAT: done in 12 s (340 lines in var/log/x.log)"). On failure: the log's last 25
# lines, where the full log is, and COMMAND's exit code. `make demo` installs this way, so its
# own output is not buried under package managers' (the full output stays in the log).
set -uo pipefail
what=$1
log=$2
shift 2
mkdir -p "$(dirname "$log")"
start=$SECONDS
printf '==> %s ...\n' "$what"
"$@" >"$log" 2>&1
rc=$?
lines=$(wc -l <"$log")
if [ "$rc" -ne 0 ]; then
  echo "==> $what: FAILED (exit $rc); the last lines of $log:" >&2
  tail -n 25 "$log" >&2
  echo "==> full output: $log" >&2
  exit "$rc"
fi
printf '==> %s: done in %d s (%d lines of output in %s)\n' "$what" $((SECONDS - start)) "$lines" "$log"
