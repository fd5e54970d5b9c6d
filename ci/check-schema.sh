#!/usr/bin/env bash
# ci/check-schema.sh: compares images/proto (as built by images/build.rs) with the
# schema of the reference CRIU's pycriu, field number by field number. See
# ci/check-schema.py for the report's format; exits 1 on a wire-level difference.
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/criu-root-env.sh"
cd "$repo_root"

cargo build --quiet -p crust-images
target_dir="${CARGO_TARGET_DIR:-$repo_root/target}"
descriptor_set="$(ls -t "$target_dir"/debug/build/crust-images-*/out/criu_descriptor_set.bin | head -n 1)"

export PYTHONHOME="$criu_root/usr"
export PYTHONDONTWRITEBYTECODE=1
unset PYTHONPATH
run_in_criu_root "$criu_root/usr/bin/python3" "$repo_root/ci/check-schema.py" "$descriptor_set"
