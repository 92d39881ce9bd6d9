#!/usr/bin/env bash
# The whole test suite, from a fresh Debian machine: installs Janus, iproute2 and the Node
# packages of the media test, then checks formatting and lints and runs every test
# (unit, protocol round-trips, real-Janus comparisons, faults, real media in a netns) and
# a bounded fuzzing run.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
export PATH="$HOME/.cargo/bin:$PATH"

bash scripts/ensure-deps.sh
bash actors-tests/media/install.sh

cargo fmt --all -- --check
cargo clippy --workspace --all-targets --locked -- -D warnings
cargo test --workspace --locked
# The fuzz targets, a bounded run each (FUZZ_SECONDS=0 skips; longer runs: scripts/fuzz.sh 600).
if [ "${FUZZ_SECONDS:-30}" != 0 ]; then
  bash scripts/fuzz.sh "${FUZZ_SECONDS:-30}"
fi
