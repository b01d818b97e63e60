#!/usr/bin/env bash
# The test suite (a few minutes on 2 cores). Sets up .venv first if needed.
set -euo pipefail
cd "$(dirname "$0")"
source ./setup_env.sh
export HF_HUB_OFFLINE=1 WANDB_MODE=offline
exec python -m pytest -q "$@" tests
