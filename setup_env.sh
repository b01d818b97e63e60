#!/usr/bin/env bash
# Creates .venv and installs requirements.txt into it (again only when requirements.txt changes).
# Sourced by run_pipeline.sh and run_tests.sh.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")"
PY=${PYTHON:-python3}
if [ ! -x .venv/bin/python ]; then
  "$PY" -m venv .venv
fi
stamp=.venv/.requirements.sha
want=$(sha256sum requirements.txt | cut -d' ' -f1)
if [ "$(cat "$stamp" 2>/dev/null)" != "$want" ]; then
  echo "setting up .venv (first run only: a few minutes) ..."
  # pip's output goes to a log: shown only if the install fails
  if ! { .venv/bin/python -m pip install -q --upgrade pip && .venv/bin/python -m pip install -q -r requirements.txt; } \
      > .venv/pip-install.log 2>&1; then
    cat .venv/pip-install.log >&2
    echo "error: installing requirements.txt failed (log above, also in .venv/pip-install.log)" >&2
    exit 1
  fi
  echo "$want" > "$stamp"
fi
export PATH="$PWD/.venv/bin:$PATH"
export ANONYMIZED_TELEMETRY=False
