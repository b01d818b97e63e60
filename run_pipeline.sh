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
run s00_combine_data.py "$@"
run s01_create_triplets.py
run s02_tkn_ms_marco.py
run s03_build_embedding_matrix.py
run s04_train_tower.py
run s05_encode_docs_to_chromadb.py
run s06_mine_hard_negatives.py
run s07_train_w_hard_negatives.py
run s08_reencode_all.py
run s10_evaluate.py
echo "done: ask questions with  .venv/bin/python s09_query_retrieve.py --data-dir $D"
