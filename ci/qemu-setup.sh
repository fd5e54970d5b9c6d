#!/bin/sh
# Installs what `cargo xtest zdtm --arch ...` and `cargo xtest nightly` need: qemu-system
# for the four architectures, the Debian cross compilers with their libc (named: with
# --no-install-recommends the cross libc is not pulled in by gcc), cpio, xz (for kernel
# modules, should a kernel ship them compressed), and the Rust
# targets. Idempotent: installs only what is missing.
set -eu

need=""
for pkg in qemu-system-arm qemu-system-ppc qemu-system-misc qemu-system-x86 cpio xz-utils \
	gcc-aarch64-linux-gnu libc6-dev-arm64-cross \
	gcc-powerpc64le-linux-gnu libc6-dev-ppc64el-cross \
	gcc-s390x-linux-gnu libc6-dev-s390x-cross \
	gcc; do
	dpkg-query -W -f='${Status}\n' "$pkg" 2>/dev/null | grep -q "install ok installed" || need="$need $pkg"
done
if [ -n "$need" ]; then
	sudo=""
	[ "$(id -u)" = 0 ] || sudo=sudo
	$sudo apt-get update -q
	$sudo env DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends $need
fi

if command -v rustup >/dev/null; then
	installed=$(rustup target list --installed)
	for target in aarch64-unknown-linux-gnu powerpc64le-unknown-linux-gnu s390x-unknown-linux-gnu; do
		echo "$installed" | grep -qx "$target" || rustup target add "$target"
	done
fi
echo "qemu-setup: ready"
