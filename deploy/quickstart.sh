#!/usr/bin/env bash
# Brings up a local cluster on this machine, as it runs in production, minus the load
# balancer: janus-sentinel starts a Janus (Debian package, private config on
# ws://127.0.0.1:8188, admin ws://127.0.0.1:7188) in managed mode and reports it to
# janus-proxy's admin API, which is how the proxy learns about it (clients:
# ws://127.0.0.1:8288, admin: http://127.0.0.1:8200, sentinel REST: http://127.0.0.1:8300).
# The proxy also serves Janus's own demo pages (Debian package janus-demos), talking to it:
# http://127.0.0.1:8280/demos.html. Installs what is missing. Runs in the foreground; Ctrl-C
# stops everything.
#
# Other ports, through the usual environment overrides:
#   JANUS_PROXY__WS__LISTEN, JANUS_PROXY__ADMIN__LISTEN, JANUS_PROXY__DEMOS__LISTEN (empty:
#   no demo pages), JANUS_SENTINEL__REST__LISTEN, and QUICKSTART_JANUS_WS_PORT /
#   QUICKSTART_JANUS_ADMIN_PORT for the Janus.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
export PATH="$HOME/.cargo/bin:$PATH"

bash scripts/ensure-deps.sh
cargo build --release --locked -p janus-proxy -p janus-sentinel

janus_ws_port="${QUICKSTART_JANUS_WS_PORT:-8188}"
janus_admin_port="${QUICKSTART_JANUS_ADMIN_PORT:-7188}"
export JANUS_PROXY__WS__LISTEN="${JANUS_PROXY__WS__LISTEN:-0.0.0.0:8288}"
export JANUS_PROXY__ADMIN__LISTEN="${JANUS_PROXY__ADMIN__LISTEN:-127.0.0.1:8200}"
export JANUS_SENTINEL__REST__LISTEN="${JANUS_SENTINEL__REST__LISTEN:-127.0.0.1:8300}"
# The demo pages ([demos] of the proxy's configuration); set but empty: none.
export JANUS_PROXY__DEMOS__LISTEN="${JANUS_PROXY__DEMOS__LISTEN-127.0.0.1:8280}"
admin_url="http://$JANUS_PROXY__ADMIN__LISTEN"
sentinel_url="http://$JANUS_SENTINEL__REST__LISTEN"

# Fail fast when a port is taken (a Janus that cannot bind would only be restarted, with
# backoff, by the sentinel).
for port in "$janus_ws_port" "$janus_admin_port" "${JANUS_PROXY__WS__LISTEN##*:}" \
  "${JANUS_PROXY__ADMIN__LISTEN##*:}" "${JANUS_SENTINEL__REST__LISTEN##*:}" \
  ${JANUS_PROXY__DEMOS__LISTEN:+"${JANUS_PROXY__DEMOS__LISTEN##*:}"}; do
  if (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; then
    echo "quickstart: port $port is in use; see the overrides at the top of $0" >&2
    exit 1
  fi
done

run_dir="$(mktemp -d /tmp/janus-cloud-quickstart.XXXXXX)"
for f in actors-tests/janus-conf/*.jcfg; do
  sed -e "s|@WS_PORT@|$janus_ws_port|; s|@ADMIN_PORT@|$janus_admin_port|; s|@NAME@|janus-1|; s|@CONF_DIR@|$run_dir|" \
    "$f" > "$run_dir/$(basename "$f")"
done
# The streaming demo's stock mountpoints (its files come with janus-demos), on their stock ports.
sed -e 's|@PORT_\([0-9]*\)@|\1|' actors-tests/media/janus-conf-demos/janus.plugin.streaming.jcfg \
  > "$run_dir/janus.plugin.streaming.jcfg"

# The proxy: deploy/janus-proxy.toml without its static [[backend.servers]] entry, so that
# the sentinel's report is the only way the proxy learns about the Janus, as in production.
# (Keeping the static janus-1 and letting the sentinel report the same name would also work,
# but the proxy would then be ready even with a sentinel that does not report, hiding a
# broken setup; and a static entry updated by reports takes their expiry, so it is no longer
# static anyway.)
awk '/^\[\[backend\.servers\]\]/ { skip = 1; next } /^\[/ { skip = 0 } !skip' \
  deploy/janus-proxy.toml > "$run_dir/janus-proxy.toml"

# The admin API refuses changes (sentinel reports included) without a token; make one unless
# the caller set one.
export JANUS_PROXY__ADMIN__TOKEN="${JANUS_PROXY__ADMIN__TOKEN:-$(head -c 16 /dev/urandom | od -An -tx1 | tr -d ' \n')}"

# The sentinel: deploy/janus-sentinel.toml, switched to managed mode on this Janus.
export JANUS_SENTINEL__GENERAL__SERVER_NAME=janus-1
export JANUS_SENTINEL__GENERAL__PUBLIC_URL="ws://127.0.0.1:$janus_ws_port"
export JANUS_SENTINEL__JANUS__WS_URL="ws://127.0.0.1:$janus_ws_port"
export JANUS_SENTINEL__JANUS__ADMIN_URL="ws://127.0.0.1:$janus_admin_port"
# A quicker first report than the file's 5 s.
export JANUS_SENTINEL__JANUS__PING_INTERVAL_MS=1000
# High-water-mark by load off: on a machine that also builds and runs everything else, host
# CPU alone would often keep the only Janus out of selection (the load is still reported).
export JANUS_SENTINEL__JANUS__HWM_LOAD=0
export JANUS_SENTINEL__PROCESS__MODE=managed
export JANUS_SENTINEL__PROCESS__BINARY="$(command -v janus)"
export JANUS_SENTINEL__PROCESS__CONFIG_FOLDER="$run_dir"
# reclaim_session_timeout lets the proxy's link claim its backend session after a blip.
export JANUS_SENTINEL__PROCESS__ARGS="-L,$run_dir/janus.log,-N,--reclaim-session-timeout=10"
export JANUS_SENTINEL__REPORT__URLS="$admin_url/sentinel_callback"
export JANUS_SENTINEL__REPORT__FORMAT=json
export JANUS_SENTINEL__REPORT__TOKEN="$JANUS_PROXY__ADMIN__TOKEN"

proxy_pid=""
sentinel_pid=""
cleanup() {
  trap - EXIT INT TERM
  # The sentinel first: it posts its final report (abnormal) to the proxy, then stops Janus.
  if [ -n "$sentinel_pid" ]; then kill -TERM "$sentinel_pid" 2>/dev/null || true; wait "$sentinel_pid" 2>/dev/null || true; fi
  if [ -n "$proxy_pid" ]; then kill -TERM "$proxy_pid" 2>/dev/null || true; wait "$proxy_pid" 2>/dev/null || true; fi
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# The proxy in its own session, away from the terminal's Ctrl-C: cleanup stops it after the
# sentinel, so that the sentinel's final report still finds it.
RUST_LOG="${RUST_LOG:-info}" setsid ./target/release/janus-proxy "$run_dir/janus-proxy.toml" &
proxy_pid=$!
RUST_LOG="${RUST_LOG:-info}" ./target/release/janus-sentinel deploy/janus-sentinel.toml &
sentinel_pid=$!

# Ready once the sentinel has reported Janus normal and the proxy has linked to it (a report
# that came before Janus listened can cost one circuit-breaker ejection, 5 s).
for _ in $(seq 1 300); do
  for pid in "$proxy_pid" "$sentinel_pid"; do
    if ! kill -0 "$pid" 2>/dev/null; then
      echo "quickstart: a process exited at start-up (ports busy? see above and $run_dir/janus.log)" >&2
      exit 1
    fi
  done
  if curl -fsS "$admin_url/readyz" >/dev/null 2>&1; then
    ws_port="${JANUS_PROXY__WS__LISTEN##*:}"
    echo
    echo "janus-cloud is up:"
    echo "  clients (Janus API, subprotocol janus-protocol): ws://127.0.0.1:$ws_port"
    echo "  proxy admin console (asks for the token below):  $admin_url/"
    if [ -n "$JANUS_PROXY__DEMOS__LISTEN" ]; then
      echo "  Janus's demo pages, through the proxy:           http://127.0.0.1:${JANUS_PROXY__DEMOS__LISTEN##*:}/demos.html"
    fi
    echo "  admin token (Authorization: Bearer …):           $JANUS_PROXY__ADMIN__TOKEN"
    echo "  janus-sentinel REST:                             $sentinel_url/sentinel/info"
    echo "    (maintenance: curl -d op=start_maintenance $sentinel_url/sentinel/op)"
    echo "  backend Janus (run by the sentinel):             ws://127.0.0.1:$janus_ws_port (log: $run_dir/janus.log)"
    echo "Ctrl-C to stop."
    status=0
    wait -n "$proxy_pid" "$sentinel_pid" || status=$?
    echo "quickstart: stopping (Ctrl-C, or a process exited: $status)" >&2
    exit 1
  fi
  sleep 0.1
done
echo "quickstart: the proxy did not become ready in 30 s; see $run_dir/janus.log and $sentinel_url/sentinel/info" >&2
exit 1
