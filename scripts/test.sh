#!/usr/bin/env bash
# The test suite, with all its set-up: system tools, virtualenv, pinned packages.
# Usage: bash scripts/test.sh [pytest arguments]
set -euo pipefail
# shellcheck source=scripts/bootstrap.sh
. "$(dirname "${BASH_SOURCE[0]}")/bootstrap.sh"

install_system_tools
install_node_tools
create_venv requirements-dev.txt
install_helm
install_other_pythons
cd "$REPO_ROOT"
exec "$VENV/bin/python" -m pytest "$@"
