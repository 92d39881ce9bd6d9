#!/usr/bin/env bash
# Runs each cargo-fuzz target for a bounded time (default 30 s each; `scripts/fuzz.sh 600`
# for a longer run). Seeds: every client request frame of the Janus 1.1.2 frames reference
# (protocol/tests/data/janus-1.1.2-frames.txt) and a few admin report bodies. cargo-fuzz needs
# nightly features (sanitizers); RUSTC_BOOTSTRAP lets the stable toolchain build them.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
export PATH="$HOME/.cargo/bin:$PATH"
seconds="${1:-30}"

command -v cargo-fuzz >/dev/null || cargo install cargo-fuzz --version 0.13.2 --locked

corpus="$(mktemp -d /tmp/janus-cloud-fuzz.XXXXXX)"
trap 'rm -rf "$corpus"' EXIT
mkdir -p "$corpus/client_frame" "$corpus/admin_report"
i=0
while IFS= read -r line; do
  i=$((i + 1))
  # Placeholders like <session1> become numbers so the seeds are valid JSON.
  printf '%s' "${line#> }" | sed -E 's/<[a-z]+[0-9]*>/1234567/g' > "$corpus/client_frame/seed-$i"
done < <(grep '^> ' protocol/tests/data/janus-1.1.2-frames.txt)
printf '%s' '{"name":"janus-1","url":"ws://10.0.0.1:8188","status":0,"expire":60,"load":0.25}' \
  > "$corpus/admin_report/json"
printf '%s' 'name=janus-1&url=ws%3A%2F%2F10.0.0.1%3A8188&status=0&session_num=3&isp=&start_time=1700000000.5' \
  > "$corpus/admin_report/form"

cd fuzz
# Build first, so that a target that no longer compiles fails the run.
RUSTC_BOOTSTRAP=1 cargo fuzz build client_frame
RUSTC_BOOTSTRAP=1 cargo fuzz build admin_report
for target in client_frame admin_report; do
  echo "fuzz: $target for ${seconds}s"
  RUSTC_BOOTSTRAP=1 cargo fuzz run "$target" "$corpus/$target" -- \
    -max_total_time="$seconds" -max_len=65536 -rss_limit_mb=2048 -print_final_stats=1 2>&1 |
    grep -E '^(stat::number_of_executed_units|stat::peak_rss_mb|#[0-9]+ +DONE)|ERROR|panicked|SUMMARY' || true
  # cargo fuzz exits non-zero on a crash; grep above only shortens the output.
  if ls artifacts/"$target"/crash-* >/dev/null 2>&1; then
    echo "fuzz: $target found a crash: $(ls artifacts/"$target"/crash-*)" >&2
    exit 1
  fi
done
