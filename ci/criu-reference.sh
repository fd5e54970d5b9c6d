#!/usr/bin/env bash
# ci/criu-reference.sh: installs the reference CRIU (and crit, python3-pycriu) from
# Debian sid into .cache/criu-root with debootstrap, so crust's images can be checked
# against the real thing. ci/criu and ci/crit run the binaries from that root through
# its own dynamic loader, without chroot. Idempotent: a finished root is kept (stamp
# file .cache/criu-root/.crust-ready) and the script then returns at once.
#
#   ci/criu-reference.sh          install if missing, then verify
#   ci/criu-reference.sh --fresh  throw the root away and install it again
#   ci/criu-reference.sh --self-test  also dump a sleeping process with the reference
#                                 criu and decode its core image with crit (root only)
#   CRUST_CRIU_ROOT=DIR           install somewhere else (ci/criu and ci/crit honour it)
set -euo pipefail

repo_root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
criu_root="${CRUST_CRIU_ROOT:-$repo_root/.cache/criu-root}"
stamp="$criu_root/.crust-ready"
suite=sid

log() { printf 'criu-reference: %s\n' "$*" >&2; }

want_self_test=0
for arg in "$@"; do
    case "$arg" in
        --fresh) rm -rf -- "$criu_root" ;;
        --self-test) want_self_test=1 ;;
        *) log "unknown option $arg"; exit 2 ;;
    esac
done

# The Debian mirror this machine's apt uses (deb822 debian.sources or sources.list).
debian_mirror() {
    local uri=""
    if [ -f /etc/apt/sources.list.d/debian.sources ]; then
        uri="$(awk '/^URIs:/ { for (i = 2; i <= NF; i++) if ($i !~ /security/) { print $i; exit } }' \
            /etc/apt/sources.list.d/debian.sources)"
    fi
    if [ -z "$uri" ] && [ -f /etc/apt/sources.list ]; then
        uri="$(awk '$1 == "deb" && $0 !~ /security/ { for (i = 2; i <= NF; i++) if ($i ~ /^https?:/) { print $i; exit } }' \
            /etc/apt/sources.list)"
    fi
    echo "${uri:-http://deb.debian.org/debian}"
}

# Runs a command chrooted into the root, in a private mount namespace with /proc,
# /dev and /sys mounted, so nothing leaks into the host's mount table.
in_root() {
    unshare --mount --propagation private -- /bin/sh -ec '
        root="$1"; shift
        mount -t proc proc "$root/proc"
        mount --rbind /dev "$root/dev"
        mount --rbind /sys "$root/sys"
        exec chroot "$root" "$@"
    ' in_root "$criu_root" "$@"
}

verify() {
    "$repo_root/ci/criu" --version >/dev/null
    "$repo_root/ci/crit" --help >/dev/null
}

# Dumps `sleep` with the reference criu and checks crit decodes its core image.
self_test() {
    local scratch sleeper
    scratch="$(mktemp -d /tmp/crust-criu-self-test.XXXXXX)"
    setsid sleep 1000 </dev/null &>/dev/null &
    sleeper=$!
    disown "$sleeper"
    sleep 0.2
    if "$repo_root/ci/criu" dump -t "$sleeper" -D "$scratch" -o dump.log \
        && "$repo_root/ci/crit" show "$scratch/core-$sleeper.img" >"$scratch/core.json" \
        && grep -q '"magic": "CORE"' "$scratch/core.json"; then
        log "self-test passed: dumped pid $sleeper, crit decoded core-$sleeper.img"
        rm -rf -- "$scratch"
    else
        kill -9 "$sleeper" 2>/dev/null || true
        log "self-test failed: see $scratch/dump.log"
        exit 1
    fi
}

if [ -f "$stamp" ] && verify 2>/dev/null; then
    log "ready: $(cat "$stamp")"
    if [ "$want_self_test" = 1 ]; then self_test; fi
    exit 0
fi

started=$SECONDS
if ! command -v debootstrap >/dev/null; then
    log "debootstrap missing: run ci/setup.sh first"
    exit 1
fi

# A root without the stamp is a half-finished install: start over.
if [ -e "$criu_root" ]; then
    log "removing unfinished root $criu_root"
    rm -rf -- "$criu_root"
fi
mkdir -p "$(dirname "$criu_root")"

mirror="$(debian_mirror)"
log "debootstrap $suite from $mirror into $criu_root"
debootstrap_log="$(dirname "$criu_root")/criu-root-debootstrap.log"
if ! debootstrap --variant=minbase "$suite" "$criu_root" "$mirror" >"$debootstrap_log" 2>&1; then
    tail -n 30 "$debootstrap_log" >&2
    [ -f "$criu_root/debootstrap/debootstrap.log" ] && tail -n 30 "$criu_root/debootstrap/debootstrap.log" >&2
    log "debootstrap failed (full log: $debootstrap_log)"
    exit 1
fi

cp /etc/resolv.conf "$criu_root/etc/resolv.conf" 2>/dev/null || true
# No service may start inside the root.
printf '#!/bin/sh\nexit 101\n' >"$criu_root/usr/sbin/policy-rc.d"
chmod +x "$criu_root/usr/sbin/policy-rc.d"

log "apt-get install criu python3-pycriu"
in_root /usr/bin/env DEBIAN_FRONTEND=noninteractive \
    apt-get -qq -o Acquire::Check-Valid-Until=false update
in_root /usr/bin/env DEBIAN_FRONTEND=noninteractive \
    apt-get install -y -qq --no-install-recommends criu python3-pycriu >/dev/null
in_root /usr/bin/apt-get clean

verify
criu_version="$("$repo_root/ci/criu" --version | tr '\n' ' ')"
pkg_version="$(in_root dpkg-query -W -f='${Version}' criu)"
echo "criu $pkg_version ($criu_version) from debian $suite, installed $(date -u +%FT%TZ)" >"$stamp"
log "ready in $((SECONDS - started))s: $(cat "$stamp")"
if [ "$want_self_test" = 1 ]; then self_test; fi
