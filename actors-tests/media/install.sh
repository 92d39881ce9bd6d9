#!/usr/bin/env bash
# Installs what the real-media end-to-end tests (actors-tests/tests/media_*.rs, demo_pages.rs)
# need on a fresh Debian 12: Janus (1.1.2 from Debian), iproute2 (ip netns), Chromium (the
# demo pages' browser), Node.js (>= 20 wanted; Debian's 18 is tried as a fallback) and the
# pinned npm packages of this folder. Idempotent: does nothing that is already done.
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
cd "$here"

SUDO=""
if [ "$(id -u)" -ne 0 ]; then
  if command -v sudo >/dev/null 2>&1; then SUDO="sudo"; fi
fi

apt_pkgs=()
command -v janus >/dev/null 2>&1 || [ -x /usr/bin/janus ] || apt_pkgs+=(janus)
command -v ip >/dev/null 2>&1 || apt_pkgs+=(iproute2)
command -v node >/dev/null 2>&1 || apt_pkgs+=(nodejs)
command -v npm >/dev/null 2>&1 || apt_pkgs+=(npm)
[ -x /usr/bin/chromium ] || apt_pkgs+=(chromium)
# janus.js and adapter.js for the test pages of our own (media_adopt.rs, webinar pages).
[ -f /usr/share/javascript/janus-gateway/janus.js ] || apt_pkgs+=(libjs-janus-gateway)
[ -f /usr/share/javascript/webrtc-adapter/adapter.js ] || apt_pkgs+=(libjs-webrtc-adapter)

if [ "${#apt_pkgs[@]}" -gt 0 ]; then
  echo "media/install.sh: apt-get install ${apt_pkgs[*]}"
  export DEBIAN_FRONTEND=noninteractive
  $SUDO apt-get update -qq
  $SUDO apt-get install -y -qq --no-install-recommends "${apt_pkgs[@]}"
fi

node_major="$(node -p 'process.versions.node.split(".")[0]')"
if [ "$node_major" -lt 20 ]; then
  echo "media/install.sh: warning: node $(node -v) is older than 20 (package.json wants >= 20)" >&2
fi

# npm packages, pinned by package-lock.json. --ignore-scripts: nothing here needs an
# install script (@roamhq/wrtc ships its binary in @roamhq/wrtc-linux-x64; janode's
# native unix-dgram dependency is replaced by the stub in stubs/ via package.json
# "overrides", so nothing is compiled).
stamp="node_modules/.janus-cloud-install-stamp"
want="$(cat package.json package-lock.json | sha256sum | cut -d' ' -f1)"
if [ -f "$stamp" ] && [ "$(cat "$stamp")" = "$want" ] \
   && [ -d node_modules/janode ] && [ -d node_modules/@roamhq/wrtc ] \
   && [ -d node_modules/playwright-core ]; then
  echo "media/install.sh: node_modules up to date"
else
  echo "media/install.sh: npm ci"
  npm ci --ignore-scripts --no-audit --no-fund
  echo "$want" > "$stamp"
fi

# Smoke check: both modules load (wrtc loads its native binary here).
node --input-type=module -e "await import('playwright-core'); await import('janode'); await import('janode/plugins/echotest'); const w = (await import('@roamhq/wrtc')).default; if (!w.RTCPeerConnection || !w.nonstandard.RTCVideoSource) throw new Error('wrtc incomplete');"
echo "media/install.sh: ok (janus $(janus --version 2>/dev/null | sed -n 's/^Janus version: .*(\(.*\))/\1/p'), node $(node -v))"
