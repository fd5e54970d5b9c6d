#!/usr/bin/env bash
# fake-engine.sh: a cheating "checkpoint/restore" engine with CRIU's command line, for
# zdtm's own tests. `dump` saves the target's argv, env and cwd, then kills it; `restore`
# re-runs the program under the same pid (through ns_last_pid) instead of restoring it.
# The harness must call every test it runs this way a failure.
set -euo pipefail
verb="$1"; shift
dir=""; pid=""
while [ $# -gt 0 ]; do
    case "$1" in
        -D) dir="$2"; shift ;;
        -t) pid="$2"; shift ;;
    esac
    shift
done
case "$verb" in
dump)
    tr '\0' '\n' < "/proc/$pid/cmdline" > "$dir/cmdline"
    tr '\0' '\n' < "/proc/$pid/environ" > "$dir/environ"
    readlink "/proc/$pid/exe" > "$dir/exe"
    readlink "/proc/$pid/cwd" > "$dir/cwd"
    echo "$pid" > "$dir/pid"
    kill -9 "$pid"
    ;;
restore)
    pid="$(cat "$dir/pid")"
    mapfile -t args < "$dir/cmdline"
    mapfile -t env < "$dir/environ"
    exe="$(cat "$dir/exe")"
    cd "$(cat "$dir/cwd")"
    # `env` is forked (pid - 1), execs the program, which forks the daemon: the old pid.
    echo $((pid - 2)) > /proc/sys/kernel/ns_last_pid
    env -i "${env[@]}" ZDTM_READY_FD= "$exe" "${args[@]:1}" < /dev/null > /dev/null 2>&1
    ;;
*)
    exit 0
    ;;
esac
