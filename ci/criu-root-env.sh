# ci/criu-root-env.sh: sourced by ci/criu and ci/crit. Sets criu_root and
# run_in_criu_root, which execs a binary of the reference root through the root's
# own dynamic loader and libraries, so no chroot is needed and paths stay the host's.
repo_root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
criu_root="${CRUST_CRIU_ROOT:-$repo_root/.cache/criu-root}"

run_in_criu_root() {
    local loader="$criu_root/lib64/ld-linux-x86-64.so.2"
    if [ ! -x "$loader" ]; then
        echo "reference criu root missing at $criu_root: run ci/criu-reference.sh" >&2
        exit 127
    fi
    local library_path="$criu_root/lib/x86_64-linux-gnu:$criu_root/usr/lib/x86_64-linux-gnu"
    exec "$loader" --library-path "$library_path" "$@"
}
