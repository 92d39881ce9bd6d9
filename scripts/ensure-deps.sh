#!/usr/bin/env bash
# Installs what building and running janus-cloud needs on Debian: Janus (Debian package) and
# its demo pages (janus-demos: the quick start serves them, a test drives them), iproute2, curl, a C toolchain for -sys crates, and a Rust toolchain if none is there.
# Idempotent. Run as root (or with sudo available).
set -euo pipefail

SUDO=""
if [ "$(id -u)" -ne 0 ] && command -v sudo >/dev/null 2>&1; then SUDO="sudo"; fi

pkgs=()
[ -x /usr/bin/janus ] || pkgs+=(janus)
[ -f /usr/share/janus/demos/echotest.html ] || pkgs+=(janus-demos)
command -v ip >/dev/null 2>&1 || pkgs+=(iproute2)
command -v curl >/dev/null 2>&1 || pkgs+=(curl)
command -v cc >/dev/null 2>&1 || pkgs+=(build-essential)
command -v pkg-config >/dev/null 2>&1 || pkgs+=(pkg-config)
command -v redis-server >/dev/null 2>&1 || pkgs+=(redis-server)
command -v haproxy >/dev/null 2>&1 || [ -x /usr/sbin/haproxy ] || pkgs+=(haproxy)
if ! command -v cargo >/dev/null 2>&1 && [ ! -x "$HOME/.cargo/bin/cargo" ]; then
  # Debian 13 packages rustup; Debian 12's own cargo is too old for these crates.
  if apt-cache show rustup >/dev/null 2>&1; then pkgs+=(rustup); else pkgs+=(cargo rustc); fi
fi

if [ "${#pkgs[@]}" -gt 0 ]; then
  echo "ensure-deps: apt-get install ${pkgs[*]}"
  export DEBIAN_FRONTEND=noninteractive
  $SUDO apt-get update -qq
  $SUDO apt-get install -y -qq --no-install-recommends "${pkgs[@]}"
  if command -v rustup >/dev/null 2>&1 && ! command -v cargo >/dev/null 2>&1; then
    rustup default stable
  fi
fi
