#!/usr/bin/env bash
# The whole pipeline, s00 to s08 and the s10 evaluation, then `python s09_query_retrieve.py` to ask questions.
#   ./run_pipeline.sh                                   # MS MARCO v1.1 from the Hugging Face Hub
#   ./run_pipeline.sh --source ../shared/msmarco-sample # a local copy in the hub's layout
#   DATA_DIR=data-v21 ./run_pipeline.sh --config v2.1   # arguments go to s00
# Any stage can be re-run on its own; each takes --help.
set -euo pipefail
cd "$(dirname "$0")"
source ./setup_env.sh
D=${DATA_DIR:-data}
run() { echo "== $*"; python "$@" --data-dir "$D"; }
first=1
for script in $(python -m common.stages); do  # the order: common/stages.py
    if [ $first = 1 ]; then run "$script" "$@"; first=0; else run "$script"; fi
done
echo "done: ask questions with  .venv/bin/python s09_query_retrieve.py --data-dir $D"
