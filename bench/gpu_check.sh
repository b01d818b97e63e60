#!/usr/bin/env bash
# The GPU path and a quiet 2-core measurement on a GPU machine (README, "The GPU path").
# WORK: the scratch folder (default: gpucheck in $TMPDIR or the system's temporary folder).
#   bash bench/gpu_check.sh part1   # CUDA: s00-s10 on a small synthetic set with --device auto;
#                                   # then v1.1-scale data (N=100k) prepared, s02 on 2 cores, s04 on the GPU
#   bash bench/gpu_check.sh part2   # s05 at 1M passages pinned to 2 cores (taskset), then s09 latency
set -uo pipefail
W=${WORK:-$(dirname "$(mktemp -u)")/gpucheck}; OUT=${OUT:-$W/out}; mkdir -p "$W" "$OUT"
PY=${PYTHON:-python3}
NS=${N_SMALL:-5000}; NB=${N_BIG:-100000}
t() { local s=$(date +%s%N); "$@"; local rc=$?; echo "[$(( ($(date +%s%N) - s) / 1000000 )) ms, rc $rc] $*"; return $rc; }
if [ "$1" = part1 ]; then
  $PY -c "import torch; print('torch', torch.__version__, 'cuda', torch.cuda.is_available(), torch.cuda.get_device_name() if torch.cuda.is_available() else '')"
  $PY -c "from common import synthetic; print(synthetic.write('$W/small', n_queries=$NS, seed=0))"
  D=$W/dsmall; G=$W/small/glove.test.txt
  t $PY s00_combine_data.py --source $W/small --data-dir $D | tail -1
  t $PY s01_create_triplets.py --data-dir $D | tail -1
  t $PY s02_tkn_ms_marco.py --data-dir $D --glove $G 2>/dev/null | tail -1
  t $PY s03_build_embedding_matrix.py --data-dir $D | tail -1
  for enc in avg gru; do
    t $PY s04_train_tower.py --data-dir $D --encoder $enc --epochs 3 --wandb disabled --out s04_$enc.pt 2>/dev/null | grep -E "^epoch|^training|best|wrote"
  done
  cp $D/s04_avg.pt $D/s04_model.pt; cp $D/s04_avg.pt.manifest.json $D/s04_model.pt.manifest.json
  t $PY s05_encode_docs_to_chromadb.py --data-dir $D 2>/dev/null | tail -2
  t $PY s06_mine_hard_negatives.py --data-dir $D 2>/dev/null | tail -1
  t $PY s07_train_w_hard_negatives.py --data-dir $D --epochs 2 --wandb disabled 2>/dev/null | grep -E "^epoch|keeping|wrote"
  t $PY s08_reencode_all.py --data-dir $D 2>/dev/null | tail -2
  $PY s09_query_retrieve.py --data-dir $D --query "what is the $(head -1 $G | cut -d' ' -f1) of it" -k 3 --width 60
  # v1.1 scale: 100k queries x 10 passages
  t $PY -c "from common import synthetic; synthetic.write('$W/big', n_queries=$NB, seed=0)"
  D=$W/dbig; G=$W/big/glove.test.txt
  t $PY s00_combine_data.py --source $W/big --data-dir $D | tail -1
  t $PY s01_create_triplets.py --data-dir $D | tail -1
  t taskset -c 0,1 $PY s02_tkn_ms_marco.py --data-dir $D --glove $G 2>/dev/null | tail -2
  t $PY s03_build_embedding_matrix.py --data-dir $D | tail -1
  t $PY s04_train_tower.py --data-dir $D --epochs 1 --wandb disabled 2>/dev/null | grep -E "^epoch|wrote"
  t taskset -c 0,1 $PY s04_train_tower.py --data-dir $D --epochs 1 --wandb disabled --device cpu --val-pool 20000 --out s04_cpu.pt 2>/dev/null | grep -E "^epoch|wrote"
else
  D=$W/dbig
  t taskset -c 0,1 $PY s05_encode_docs_to_chromadb.py --data-dir $D --device cpu 2>/dev/null | tail -2
  du -sh $D/chroma* | tail -3
  t taskset -c 0,1 $PY bench/latency.py --data-dir $D 2>&1 | tail -8 || true
  (time (echo exit | taskset -c 0,1 $PY s09_query_retrieve.py --data-dir $D --mode dense)) 2>&1 | tail -5
fi
