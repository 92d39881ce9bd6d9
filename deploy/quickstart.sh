#!/usr/bin/env bash
# Brings up a local cluster on this machine: a Janus (Debian package, private config on
# ws://127.0.0.1:8188, admin ws://127.0.0.1:7188) and janus-proxy in front of it
# (clients: ws://127.0.0.1:8288, admin: http://127.0.0.1:8200). Installs what is missing.
# Runs in the foreground; Ctrl-C stops both.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
export PATH="$HOME/.cargo/bin:$PATH"

bash scripts/ensure-deps.sh
cargo build --release --locked -p janus-proxy

run_dir="$(mktemp -d /tmp/janus-cloud-quickstart.XXXXXX)"
for f in actors-tests/janus-conf/*.jcfg; do
  sed -e "s|@WS_PORT@|8188|; s|@ADMIN_PORT@|7188|; s|@NAME@|janus-1|; s|@CONF_DIR@|$run_dir|" \
    "$f" > "$run_dir/$(basename "$f")"
done

# The admin API refuses changes without a token; make one unless the caller set one.
export JANUS_PROXY__ADMIN__TOKEN="${JANUS_PROXY__ADMIN__TOKEN:-$(head -c 16 /dev/urandom | od -An -tx1 | tr -d ' \n')}"

pids=()
cleanup() { kill "${pids[@]}" 2>/dev/null || true; wait 2>/dev/null || true; }
trap cleanup EXIT INT TERM

# reclaim_session_timeout lets the proxy's link claim its backend session after a blip.
janus -F "$run_dir" -L "$run_dir/janus.log" -N --reclaim-session-timeout=10 &
pids+=($!)
RUST_LOG="${RUST_LOG:-info}" ./target/release/janus-proxy deploy/janus-proxy.toml &
pids+=($!)

for _ in $(seq 1 100); do
  if curl -fsS http://127.0.0.1:8200/readyz >/dev/null 2>&1; then
    echo
    echo "janus-cloud is up:"
    echo "  clients (Janus API, subprotocol janus-protocol): ws://127.0.0.1:8288"
    echo "  proxy admin:                                     http://127.0.0.1:8200/ (dashboard)"
    echo "  admin token (Authorization: Bearer …):           $JANUS_PROXY__ADMIN__TOKEN"
    echo "  backend Janus:                                   ws://127.0.0.1:8188 (log: $run_dir/janus.log)"
    echo "Ctrl-C to stop."
    wait -n "${pids[@]}"
    exit 1
  fi
  sleep 0.1
done
echo "quickstart: the proxy did not become ready; see $run_dir/janus.log" >&2
exit 1
