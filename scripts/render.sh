#!/usr/bin/env bash
# The main job offline: render a stack without cloud credentials or the Pulumi CLI.
# Usage: bash scripts/render.sh <stack ...|--all> [--out DIR] [--plan BASE_REF]
set -euo pipefail
# shellcheck source=scripts/bootstrap.sh
. "$(dirname "${BASH_SOURCE[0]}")/bootstrap.sh"

create_venv requirements.txt
cd "$REPO_ROOT"
exec "$VENV/bin/python" -m tools.render "$@"
