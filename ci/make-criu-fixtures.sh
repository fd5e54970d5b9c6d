#!/usr/bin/env bash
# ci/make-criu-fixtures.sh: dumps small processes (ci/fixture-procs.c) with the
# reference CRIU into images/tests/criu-fixtures/<name>/, with crit's JSON decoding of
# every image beside it in <name>/crit-json/<image>.json, for wire-compatibility tests.
# Needs root and ci/criu-reference.sh. Not run by CI: the fixtures are committed.
#
#   ci/make-criu-fixtures.sh [NAME...]   NAME: regular-file pipe socketpair
#                                        pending-signal threads (all by default)
set -euo pipefail

repo_root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
fixtures_dir="$repo_root/images/tests/criu-fixtures"
max_image_bytes=$((2 * 1024 * 1024))
names=("$@")
[ "${#names[@]}" -gt 0 ] || names=(regular-file pipe socketpair pending-signal threads)

log() { printf 'make-criu-fixtures: %s\n' "$*" >&2; }

"$repo_root/ci/criu-reference.sh"
scratch="$(mktemp -d /tmp/crust-fixtures.XXXXXX)"
trap 'rm -rf -- "$scratch"' EXIT
gcc -O2 -Wall -Wextra -o "$scratch/fixture-procs" "$repo_root/ci/fixture-procs.c" -pthread

for name in "${names[@]}"; do
    pidfile="$scratch/$name.pid"
    "$scratch/fixture-procs" "$name" "$pidfile" "$scratch"
    for _ in $(seq 100); do [ -s "$pidfile" ] && break; sleep 0.05; done
    pid="$(cat "$pidfile")"
    dump_dir="$scratch/dump-$name"
    mkdir -p "$dump_dir"
    # criu dump kills the process once its images are written.
    if ! "$repo_root/ci/criu" dump -t "$pid" -D "$dump_dir" -o "$scratch/$name.log" -v4; then
        tail -n 20 "$scratch/$name.log" >&2
        kill -9 "$pid" 2>/dev/null || true
        log "$name: criu dump failed"
        exit 1
    fi
    target="$fixtures_dir/$name"
    rm -rf -- "$target"
    mkdir -p "$target/crit-json"
    for image in "$dump_dir"/*; do
        base="$(basename "$image")"
        size="$(stat -c %s "$image")"
        if [ "$size" -gt "$max_image_bytes" ]; then
            log "$name: skipping $base ($size bytes)"
            continue
        fi
        cp "$image" "$target/$base"
        case "$base" in
            pages-*.img) continue ;; # raw page contents, no protobuf entries
        esac
        if ! "$repo_root/ci/crit" decode -i "$image" --pretty -o "$target/crit-json/${base%.img}.json" 2>"$scratch/crit.err"; then
            log "$name: crit cannot decode $base: $(tail -n 1 "$scratch/crit.err")"
        fi
    done
    log "$name: pid $pid, $(du -sh "$target" | cut -f1) in $target"
done
criu_version="$(cat "$repo_root/.cache/criu-root/.crust-ready" 2>/dev/null || echo unknown)"
cat >"$fixtures_dir/README.md" <<README
# Reference CRIU dumps

Made by \`ci/make-criu-fixtures.sh\` with the reference CRIU (\`ci/criu-reference.sh\`):
$criu_version. Each directory is one \`criu dump -t PID -D DIR\` of a process from
\`ci/fixture-procs.c\` (kernel $(uname -r), x86_64); \`crit-json/\` holds \`crit decode
--pretty\` of every image but the raw \`pages-*.img\`. Regenerate rather than edit.

| fixture | state the process holds |
| --- | --- |
| regular-file | a regular file open read-write at offset 6, and again read-only with O_CLOEXEC |
| pipe | both ends of a pipe with 23 bytes queued |
| socketpair | a unix stream pair with bytes queued, a unix datagram pair with one datagram queued |
| pending-signal | SIGUSR1 pending on the thread, SIGRTMIN+1 pending on the process, both blocked; a SIGUSR2 handler |
| threads | two threads, the second on a 64 KiB stack |
README
