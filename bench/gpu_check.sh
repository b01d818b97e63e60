#!/usr/bin/env bash
# The GPU path and a quiet 2-core measurement on a GPU machine (README, "The GPU path").
# WORK: the scratch folder (default: gpucheck in $TMPDIR or the system's temporary folder).
#   bash bench/gpu_check.sh part1   # CUDA: s00-s10 on a small synthetic set with --device auto;
#                                   # then v1.1-scale data (N=100k) prepared, s02 on 2 cores, s04 on the GPU
#   bash bench/gpu_check.sh part2   # s05 at 1M passages pinned to 2 cores (taskset), then s09 latency
#   bash bench/gpu_check.sh ddp     # s04 under torchrun (NCCL on CUDA) with one process, against the plain run,
#                                   # and killed after epoch 1 then resumed (N_DDP queries; DEVICE, default auto)
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
elif [ "$1" = ddp ]; then
  ND=${N_DDP:-2000}; DEV=${DEVICE:-auto}; A="--epochs 3 --wandb disabled --device $DEV"
  $PY -c "import torch; print('torch', torch.__version__, 'cuda', torch.cuda.is_available(), 'nccl', torch.distributed.is_nccl_available())"
  $PY -c "from common import synthetic; synthetic.write('$W/ddp', n_queries=$ND, seed=0)" >/dev/null
  D=$W/dddp; G=$W/ddp/glove.test.txt; rm -rf $D $D-1 $D-k
  t $PY s00_combine_data.py --source $W/ddp --data-dir $D | tail -1
  t $PY s01_create_triplets.py --data-dir $D | tail -1
  t $PY s02_tkn_ms_marco.py --data-dir $D --glove $G 2>/dev/null | tail -1
  t $PY s03_build_embedding_matrix.py --data-dir $D | tail -1
  t $PY s04_train_tower.py --data-dir $D $A 2>/dev/null | grep -E "^epoch|^training|best|wrote"
  cp -a $D $D-1; cp -a $D $D-k   # (the teacher's targets cached by the plain run)
  t $PY -m torch.distributed.run --standalone --nproc_per_node=1 s04_train_tower.py --data-dir $D-1 $A 2>/dev/null \
    | grep -E "^epoch|^training|best|wrote"
  t $PY tests/launch.py 1 s04_train_tower.py --data-dir $D-k $A 2>/dev/null | grep -E "^epoch"
  t $PY s04_train_tower.py --data-dir $D-k $A 2>/dev/null | grep -E "^epoch|resuming|best"
  $PY - "$D" "$D-1" "$D-k" <<'PYEOF'
import json, sys, torch
def load(d):
    return torch.load(f"{d}/s04_model.pt", map_location="cpu", weights_only=True)["state_dict"], \
        json.load(open(f"{d}/s04_model.pt.manifest.json"))["stats"]
(a, ma), (b, mb), (k, mk) = (load(d) for d in sys.argv[1:])
diff = lambda x, y: max((x[n].float() - y[n].float()).abs().max().item() for n in x)
print(f"plain: MRR@10 {ma['val']['mrr@10']:.4f} (world {ma['world_size']}); torchrun x1: {mb['val']['mrr@10']:.4f} "
      f"(world {mb['world_size']}), max weight difference {diff(a, b):.3g}; killed + resumed: "
      f"{mk['val']['mrr@10']:.4f}, max weight difference {diff(a, k):.3g}")
PYEOF
else
  D=$W/dbig
  t taskset -c 0,1 $PY s05_encode_docs_to_chromadb.py --data-dir $D --device cpu 2>/dev/null | tail -2
  du -sh $D/chroma* | tail -3
  t taskset -c 0,1 $PY bench/latency.py --data-dir $D 2>&1 | tail -8 || true
  (time (echo exit | taskset -c 0,1 $PY s09_query_retrieve.py --data-dir $D --mode dense)) 2>&1 | tail -5
fi
