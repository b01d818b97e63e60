#!/usr/bin/env bash
# The test suite (a few minutes on 2 cores). Sets up .venv first if needed.
# One pytest worker per core, at most 4 (pytest-xdist; each builds its own small pipeline);
# `./run_tests.sh -n 0` runs in one process.
set -euo pipefail
cd "$(dirname "$0")"
source ./setup_env.sh
export HF_HUB_OFFLINE=1 WANDB_MODE=offline
# the browser test drives the system's Chromium (Playwright's own browser download needs the internet
# beyond PyPI): install Debian's package when it is missing and we can; else that test says why it skips
if ! command -v chromium >/dev/null 2>&1 && [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
  echo "installing chromium (Debian's package) for the browser test ..."
  { apt-get update -q && DEBIAN_FRONTEND=noninteractive apt-get install -y -q chromium; } > .venv/apt-chromium.log 2>&1 \
    || echo "warning: could not install chromium (.venv/apt-chromium.log): the browser test will skip" >&2
fi
workers=$(nproc 2>/dev/null || echo 2)
if [ "$workers" -gt 4 ]; then workers=4; fi
exec python -m pytest -q -n "$workers" "$@" tests
