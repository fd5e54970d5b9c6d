#!/usr/bin/env bash
# ci/setup.sh: installs what a fresh Debian bookworm machine (root, rustup stable +
# nightly) needs to build and test crust. Idempotent and fast when all is there.
#
#   ci/setup.sh [--ci]   the set .ci/run needs: cross compilers with their libc and
#                        binutils, qemu-user-static (cargo xtest arch), debootstrap (for
#                        ci/criu-reference.sh), nftables, iptables (restore lifts CRIU's
#                        default TCP lock with it), util-linux and procps (restore-fuzz's
#                        unshare and kill), qemu for CI's VM smoke run (aarch64), the
#                        kernel fetch's xz, go and go-criu (the RPC test's go-criu
#                        client), runc, podman and conmon (cargo xtest containers),
#                        rustup cross targets, rust-src, cargo-fuzz on nightly
#   ci/setup.sh --full   the --ci set plus what every other verb runs: qemu for all four
#                        VM architectures (`cargo xtest zdtm --arch A`, `nightly`), the
#                        language runtimes of `cargo xtest zdtm --group runtime`
#                        (python3, java, node, go), and gdb, strace
#   ci/setup.sh --no-fuzz  skip building cargo-fuzz (it takes minutes the first time)
#
# xtask/src/tools.rs names, per verb, each program it runs and the package and flag
# here that installs it; its unit test fails when these lists lose one.
set -euo pipefail

want_full=0
want_fuzz=1
for arg in "$@"; do
    case "$arg" in
        --ci) ;;
        --full) want_full=1 ;;
        --no-fuzz) want_fuzz=0 ;;
        -h|--help) sed -n '2,20p' "$0"; exit 0 ;;
        *) echo "setup.sh: unknown option $arg" >&2; exit 2 ;;
    esac
done

# Packages .ci/run needs. The libc6-dev-*-cross packages are named explicitly: the
# cross gcc only recommends them and --no-install-recommends would drop them. Go and
# go-criu build the go-criu client of cli/tests/rpc.rs (offline, GOPATH mode).
ci_apt_packages=(
    ca-certificates
    apt dpkg
    gcc g++ binutils-x86-64-linux-gnu
    libc6-dev
    pkg-config
    debootstrap
    gcc-aarch64-linux-gnu binutils-aarch64-linux-gnu libc6-dev-arm64-cross
    gcc-powerpc64le-linux-gnu binutils-powerpc64le-linux-gnu libc6-dev-ppc64el-cross
    gcc-s390x-linux-gnu binutils-s390x-linux-gnu libc6-dev-s390x-cross
    qemu-user-static
    nftables
    iptables
    util-linux procps
    iproute2
    # cargo xtest zdtm --flavor container: busybox for the containers' rootfs; iptables for
    # the reference CRIU validating the flavor: its network lock runs iptables-restore in
    # the container's network namespace, as it runs ip for its addresses and routes.
    busybox-static
    # cargo xtest containers: runc, Debian's 1.1.5, and podman 4.3 over it, with conmon;
    # podman pulls in containers-common and the CNI plugins, the flows use --network none
    runc podman conmon
    xz-utils
    qemu-system-arm
    # the virtio NIC's option ROM (efi-virtio.rom) that qemu-system-aarch64 loads for the
    # VM's network device; only a recommendation of qemu-system-data
    ipxe-qemu
    golang-go golang-github-checkpoint-restore-go-criu-dev
    # GNU tar and gzip (essential in Debian, named for what uses them): the tmpfs
    # archive interop tests run GNU tar, `cargo xtest fuzz` seeds with `gzip -dc`
    tar gzip
)
# Packages of the verbs CI does not run: the other VM architectures, the runtime group.
full_apt_packages=(
    qemu-system-x86 qemu-system-arm qemu-system-ppc qemu-system-misc
    python3 default-jre-headless nodejs golang-go
    gdb strace
)
rust_targets=(aarch64-unknown-linux-gnu powerpc64le-unknown-linux-gnu s390x-unknown-linux-gnu)

log() { printf 'setup: %s\n' "$*" >&2; }

as_root() {
    if [ "$(id -u)" = 0 ]; then "$@"; else sudo "$@"; fi
}

install_apt_packages() {
    local missing=() package
    for package in "$@"; do
        if ! dpkg-query -W -f='${Status}' "$package" 2>/dev/null | grep -q 'install ok installed'; then
            missing+=("$package")
        fi
    done
    if [ "${#missing[@]}" -eq 0 ]; then
        log "apt: all ${#} packages present"
        return
    fi
    log "apt: installing ${missing[*]}"
    if [ -z "${apt_updated:-}" ]; then
        as_root apt-get update -qq
        apt_updated=1
    fi
    as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
}

install_rust_targets() {
    local toolchain="$1" installed missing=() target
    installed="$(rustup +"$toolchain" target list --installed)"
    for target in "${rust_targets[@]}"; do
        grep -qx "$target" <<<"$installed" || missing+=("$target")
    done
    if [ "${#missing[@]}" -gt 0 ]; then
        log "rustup $toolchain: adding targets ${missing[*]}"
        rustup +"$toolchain" target add "${missing[@]}"
    fi
    if ! rustup +"$toolchain" component list --installed | grep -q '^rust-src'; then
        log "rustup $toolchain: adding rust-src"
        rustup +"$toolchain" component add rust-src
    fi
}

install_cargo_fuzz() {
    if ! rustup toolchain list | grep -q '^nightly'; then
        log "no nightly toolchain: installing it (minimal profile)"
        rustup toolchain install nightly --profile minimal
    fi
    if cargo +nightly fuzz --version >/dev/null 2>&1; then
        log "cargo-fuzz present: $(cargo +nightly fuzz --version)"
        return
    fi
    log "building cargo-fuzz (takes a few minutes once)"
    cargo +nightly install cargo-fuzz --locked
}

started=$SECONDS
install_apt_packages "${ci_apt_packages[@]}"
if [ "$want_full" = 1 ]; then
    install_apt_packages "${full_apt_packages[@]}"
fi
# The toolchain cargo uses in this repo (a rust-toolchain.toml may pin one), and stable.
repo_root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
active_toolchain="$(cd "$repo_root" && rustup show active-toolchain | cut -d' ' -f1)"
install_rust_targets "$active_toolchain"
case "$active_toolchain" in
    stable|stable-*) ;;
    *) install_rust_targets stable ;;
esac
if rustup toolchain list | grep -q '^nightly'; then
    rustup +nightly component list --installed | grep -q '^rust-src' \
        || rustup +nightly component add rust-src
fi
if [ "$want_fuzz" = 1 ]; then
    install_cargo_fuzz
fi
log "done in $((SECONDS - started))s"
