#!/usr/bin/env bash
# Re-lock the Python dependencies: requirements.txt and requirements-dev.txt (the pins a
# human edits) -> requirements.lock and requirements-dev.lock (every transitive package,
# pinned, with the sha256 of every file PyPI serves for it), resolved for Python 3.11.
# scripts/bootstrap.sh installs from the locks with --require-hashes. Run it after any
# edit to requirements*.txt:  bash scripts/lock.sh
set -euo pipefail

REPO_ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
PYTHON="${PYTHON:-python3.11}"
PIP_TOOLS="pip-tools==7.6.2"

# pip-tools in a throwaway virtualenv: never in the project's .venv.
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
"$PYTHON" -m venv "$work/venv"
"$work/venv/bin/python" -m pip install -q --disable-pip-version-check "$PIP_TOOLS"

cd "$REPO_ROOT"
# PyPI alone, whatever this machine's pip configuration adds (local wheel folders or
# indexes would change the resolution and hash only the files found there).
export PIP_CONFIG_FILE=/dev/null
unset PIP_FIND_LINKS PIP_EXTRA_INDEX_URL PIP_INDEX_URL PIP_CONSTRAINT
# The dev lock first (the whole set the tests run with); the runtime lock then takes the
# same version of every package it shares with it (pulumi-policy, for one, caps protobuf).
# --allow-unsafe: pin pip/setuptools too when something needs them, or --require-hashes
# would refuse the install.
compile() {
  CUSTOM_COMPILE_COMMAND="bash scripts/lock.sh" "$work/venv/bin/pip-compile" --quiet --generate-hashes --allow-unsafe --strip-extras \
    --no-emit-index-url --resolver=backtracking --rebuild "$@"
}
compile --output-file requirements-dev.lock requirements-dev.txt
sed -n 's/^\([A-Za-z0-9._-]*==[^ ]*\) .*/\1/p' requirements-dev.lock > "$work/dev-versions.txt"
compile --constraint "$work/dev-versions.txt" --output-file requirements.lock requirements.txt
# Name the constraint's source, not this run's temporary copy of it.
sed -i "s|-c $work/dev-versions.txt|-c requirements-dev.lock|" requirements.lock
