#!/usr/bin/env bash
# The whole test suite, from a fresh Debian machine: refuses large tracked files, installs
# Janus, Redis, HAProxy, iproute2 and the Node packages of the media tests, then checks
# formatting and lints and runs every test (unit, protocol round-trips, real-Janus
# comparisons, faults, real media in a netns) and a bounded fuzzing run. One heading line per
# stage, a summary line at the end.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
export PATH="$HOME/.cargo/bin:$PATH"

started=$SECONDS
stage="start"
elapsed() { local s=$((SECONDS - started)); printf '%dm %02ds' $((s / 60)) $((s % 60)); }
heading() {
  stage="$1"
  echo
  echo "==> test.sh: $1 ($(elapsed) so far)"
}
trap 'echo "test.sh: FAILED in stage \"$stage\" after $(elapsed)" >&2' ERR

heading "files: no tracked file over 1 MiB"
# Build or crash artefacts (a core dump, a log, a binary) do not belong in git.
limit=$((1024 * 1024))
if git rev-parse --is-inside-work-tree >/dev/null 2>&1; then
  big="$(git ls-files -z | xargs -0 -r stat -c '%s %n' -- 2>/dev/null |
    awk -v limit="$limit" '$1 > limit { size = $1; $1 = ""; printf "  %s (%.1f MiB)\n", substr($0, 2), size / 1048576 }' || true)"
  if [ -n "$big" ]; then
    echo "test.sh: tracked files over 1 MiB (git rm --cached them; build and crash artefacts stay out of git):" >&2
    echo "$big" >&2
    false
  fi
else
  echo "not a git work tree: skipped"
fi

heading "deps: Janus, Redis, HAProxy, toolchain, Node packages"
bash scripts/ensure-deps.sh
bash actors-tests/media/install.sh

heading "fmt"
cargo fmt --all -- --check

heading "clippy"
cargo clippy --workspace --all-targets --locked -- -D warnings

heading "tests"
cargo test --workspace --locked

# The fuzz targets, a bounded run each (FUZZ_SECONDS=0 skips; longer runs: scripts/fuzz.sh 600).
heading "fuzz: ${FUZZ_SECONDS:-30} s per target"
if [ "${FUZZ_SECONDS:-30}" != 0 ]; then
  bash scripts/fuzz.sh "${FUZZ_SECONDS:-30}"
else
  echo "FUZZ_SECONDS=0: skipped"
fi

echo
echo "test.sh: passed in $(elapsed)"
