#!/usr/bin/env bash
# The code location image's build steps, as a script: the Dockerfile runs it, and so does
# integration_patterns_tests/test_deploy.py in a clean directory on a machine without a
# container engine. Usage: deploy/build.sh APP_DIR (the sources are copied from this repo).
set -euo pipefail
APP_DIR=${1:?usage: deploy/build.sh APP_DIR}
SRC=$(cd "$(dirname "$0")/.." && pwd)
export UV_PYTHON_DOWNLOADS=never UV_COMPILE_BYTECODE=${UV_COMPILE_BYTECODE:-1}

mkdir -p "$APP_DIR"
if [ "$SRC" != "$(cd "$APP_DIR" && pwd)" ]; then
  cp "$SRC/pyproject.toml" "$SRC/uv.lock" "$SRC/README.md" "$SRC/workspace.yaml" "$APP_DIR/"
  rm -rf "$APP_DIR/integration_patterns"
  cp -r "$SRC/integration_patterns" "$APP_DIR/"
  find "$APP_DIR/integration_patterns" -name __pycache__ -prune -exec rm -rf {} +
fi
cd "$APP_DIR"
command -v uv >/dev/null || python3 -m pip install --quiet "uv==0.13.*"
# Locked runtime dependencies only: no test or lint tools in the image.
uv sync --frozen --no-dev --no-editable
# The image must load its own definitions, or it is not a code location.
.venv/bin/python -c "from integration_patterns.definitions import defs; defs()"
