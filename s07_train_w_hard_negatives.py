"""Stage 7: train again with the mined hard negatives (in-batch negatives too).

Starts from the s04 checkpoint (`--init s04`) or from scratch (`--init fresh`), trains on the
s06 triplets (plus the s01 random ones with `--with-random`), keeps its best epoch at
data/s07_model.pt, then compares it with s04 on the same validation pool and copies the better
one to data/best_model.pt, saying which. With a teacher-trained s04, `--mmse W` and `--neg-distill W`
also have the teacher embed s06's negatives (common/teacher_negatives.py) and train on its scores of
them (margin-MSE) or its vectors of them; off by default (README, "What helped and what did not").

    python s07_train_w_hard_negatives.py
    torchrun --standalone --nproc_per_node=2 s07_train_w_hard_negatives.py   # 2 processes (README: torchrun)

Killed part-way, the same command resumes from the last finished epoch (data/s07_model.resume.pt).
"""
import shutil

import pyarrow as pa
import pyarrow.parquet as pq
import torch

from common import cli, distributed, teacher_negatives, tracking
from common.artifacts import StageError, atomic_path, require, run_main, write_manifest
from common.corpus import load_corpus
from common.encode import load_embeddings, load_model
from common.model import TwoTowerModel, stem_map
from common.resume import Resume, resume_path, run_key
from common.train import attach_passages, attach_teacher, fit, project_teacher, train_set, validate, validation_set


def main(argv=None, on_saved=None):
    """on_saved(epoch): called after each epoch's resumable state is saved (tests kill the run there)."""
    p = cli.parser(__doc__)
    p.add_argument("--init", default="s04", choices=["s04", "fresh"], help="start from s04's weights or anew")
    p.add_argument("--checkpoint", default="s04_model.pt", help="the s04 checkpoint")
    p.add_argument("--with-random", action="store_true", help="also train on s01's random-negative triplets")
    p.add_argument("--mmse", type=cli.nonneg_float, default=0.0,
                   help="weight of margin-MSE against the teacher's scores of s06's negatives (0: off)")
    p.add_argument("--neg-distill", type=cli.nonneg_float, default=0.0,
                   help="weight of the pull of s06's negatives towards the teacher's vectors of them (0: off)")
    cli.add_train(p, epochs=5, lr=5e-4, lr_emb=5e-3)
    cli.add_device(p)
    cli.add_wandb(p)
    args = p.parse_args(argv)
    t = cli.Timer()
    device = cli.setup_torch(args)
    ddp, device = distributed.setup(device)  # under torchrun: this process's rank and device
    main_rank = ddp is None or ddp.main       # rank 0 alone validates s04, prints, logs and writes files
    say = print if main_rank else (lambda *a, **k: None)
    d = args.data_dir
    corpus = load_corpus(d)
    s04, ckpt = load_model(d / args.checkpoint, corpus.vocab.fingerprint, device)
    hm = require(d / "hard_negatives.parquet")
    trip = pq.read_table(d / "hard_negatives.parquet")
    if args.with_random:
        trip = pa.concat_tables([trip, pq.read_table(d / "triplets.parquet")])
    ts = train_set(corpus, trip, "train")
    vs = validation_set(corpus, "validation", args.val_pool, args.seed)
    base = None
    if main_rank:
        base = validate(s04, corpus, vs, device)
        print(f"s04 validation MRR@10 {base['mrr@10']:.4f} (same pool as below)")
    basis = ckpt.get("teacher_basis")
    if args.distill and basis is not None:  # the targets s04 learned, through the same projection
        with distributed.main_first(ddp):  # rank 0 fills data/teacher/, the others read it
            attach_teacher(ts, corpus, args.distill_pairs, device, log=say)
        project_teacher(ts, basis.numpy())
        if args.distill_passages:
            with distributed.main_first(ddp):
                attach_passages(ts, corpus, args.distill_passages, basis.numpy(), device, log=say)
    aux = None
    if args.mmse or args.neg_distill:  # the teacher embeds s06's negatives (common/teacher_negatives.py)
        if not (args.distill and basis is not None and ts.t_raw is not None):
            raise StageError("--mmse and --neg-distill need the teacher: --distill > 0 here, and an s04 "
                             "trained with it")
        with distributed.main_first(ddp):
            teacher_negatives.attach(ts, corpus, "mined", device, basis=basis.numpy(), log=say)
        aux = {"mmse": args.mmse, "neg_distill": args.neg_distill}
    if args.init == "s04":
        model = s04
    else:
        emb = load_embeddings(d, ckpt["config"].get("embeddings"))
        torch.manual_seed(args.seed)  # a random head or GRU: the same in every process and every run
        model = TwoTowerModel(len(corpus.vocab), emb.shape[1], ckpt["config"], embeddings=emb,
                              idf=corpus.vocab.idf(), stems=stem_map(corpus.vocab.words), seed=args.seed,
                              head_init=basis.numpy().T if basis is not None and emb.shape[1] == basis.shape[0] else None)
    world = 1 if ddp is None else ddp.world_size
    run = tracking.init(args.wandb if main_rank else "disabled", args.wandb_project, d, "s07_train_w_hard_negatives",
                        vars(args) | model.config | {"world_size": world})
    out = d / "s07_model.pt"
    inputs = {"vocab": corpus.vocab_manifest, "hard_negatives": hm, "s04": ckpt["fingerprint"]}
    extra = {"triplets": require(d / "triplets.parquet")} if args.with_random else {}
    resume = Resume(resume_path(out), run_key("s07", args, inputs | extra, world))
    best, hist = fit(model, corpus, ts, vs, device, out, args.epochs, args.batch_size, args.lr, args.lr_emb,
                     loss=args.loss, margin=args.margin, seed=args.seed, run=run,
                     patience=args.patience, distill=args.distill if basis is not None else 0.0,
                     aux=aux, log=say, ddp=ddp, resume=resume, on_saved=on_saved,
                     meta={"vocab_fingerprint": corpus.vocab.fingerprint, "stage": "s07",
                           **({"teacher_basis": basis} if basis is not None else {})})
    if not main_rank:
        distributed.teardown(ddp)
        return
    winner = "s07" if best["mrr@10"] > base["mrr@10"] else "s04"
    run.log({"s04_val_mrr@10": base["mrr@10"], "s07_val_mrr@10": best["mrr@10"], "winner_is_s07": winner == "s07"})
    run.finish()
    m = write_manifest(out, "s07_train_w_hard_negatives.py", {k: str(v) for k, v in vars(args).items()},
                       inputs=inputs, stats={"val": best, "s04_val": base, "history": hist, "world_size": world})
    resume.clear()  # after the manifest: a run killed before it finishes at once on a re-run
    src = out if winner == "s07" else d / args.checkpoint
    with atomic_path(d / "best_model.pt") as tmp:
        shutil.copyfile(src, tmp)
    write_manifest(d / "best_model.pt", "s07_train_w_hard_negatives.py", {"winner": winner},
                   inputs={"vocab": corpus.vocab_manifest, "from": m},
                   stats={"s04_val_mrr@10": base["mrr@10"], "s07_val_mrr@10": best["mrr@10"]})
    print(f"validation MRR@10: s04 {base['mrr@10']:.4f}, s07 {best['mrr@10']:.4f} -> keeping {winner}")
    cli.done(f"{out} and {d / 'best_model.pt'} (= {winner})", t)
    distributed.teardown(ddp)


if __name__ == "__main__":
    run_main(main)
