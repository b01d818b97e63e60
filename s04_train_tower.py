"""Stage 4: train the two-tower model on (query, positive, random negative) triplets.

Loss: a triplet margin (`--loss inbatch`: softmax over the batch), plus the teacher's embeddings of
the training questions and positives (`--distill`, common/train.py; `--distill 0`: labels alone),
and of up to `--distill-passages` more training passages, pulled towards them without a label.

After each epoch it ranks the validation pool and keeps the best checkpoint (by MRR@10) at
data/s04_model.pt, with the model's config and the vocabulary's fingerprint.

    python s04_train_tower.py                 # avg encoder, triplet margin + the teacher
    python s04_train_tower.py --encoder gru   # GRU encoder
    python s04_train_tower.py --loss inbatch  # softmax over the batch instead of the margin
    torchrun --standalone --nproc_per_node=2 s04_train_tower.py   # 2 processes (README: torchrun)

Killed part-way, the same command resumes from the last finished epoch (data/s04_model.resume.pt).
    # expected on ../shared/msmarco-sample: see the reproduction table in README.md
"""
import numpy as np
import pyarrow.parquet as pq
import torch

from common import cli, distributed, tracking
from common.artifacts import StageError, check_lineage, require, run_main, write_manifest
from common.corpus import load_corpus
from common.encode import load_embeddings
from common.model import DEFAULT_CONFIG, TwoTowerModel, stem_map
from common.resume import Resume, resume_path, run_key
from common.stages import script
from common.train import attach_passages, attach_teacher, fit, head_start, project_teacher, train_set, validation_set


def add_teacher_similarity_args(p):
    g = p.add_argument_group("losses on the teacher's similarities (need --distill > 0; off by default)")
    g.add_argument("--rel", type=cli.nonneg_float, default=0.0,
                   help="weight of relational distillation: KL between the teacher's and the student's "
                        "softmax over each batch's candidates")
    g.add_argument("--rel-tau-t", type=cli.positive_float, default=0.05, help="teacher temperature for --rel")
    g.add_argument("--rel-tau-s", type=cli.positive_float, default=0.05, help="student temperature for --rel")
    g.add_argument("--mmse", type=cli.nonneg_float, default=0.0,
                   help="weight of margin-MSE against the teacher on teacher-scored negatives (--teacher-neg)")
    g.add_argument("--neg-distill", type=cli.nonneg_float, default=0.0,
                   help="pointwise distillation weight on the teacher-scored negatives' own targets")
    g.add_argument("--teacher-neg", default="none", choices=["none", "bm25", "candidates", "mined"],
                   help="one negative per distilled pair, embedded by the teacher (common/teacher_negatives.py)")
    g.add_argument("--lr-vectors", type=cli.positive_float, default=None,
                   help="learning rate of the word vectors with --train-emb (default: --lr-emb)")
    g.add_argument("--teacher-neg-skip", type=cli.nonneg_int, default=3)
    g.add_argument("--teacher-neg-depth", type=cli.positive_int, default=30)
    g.add_argument("--teacher-neg-fn-margin", type=float, default=0.0,
                   help="drop a negative the teacher scores above (positive's score - this)")


def teacher_similarity_setup(args, ts, corpus, device, distill, basis) -> dict:
    if not distill:
        if args.rel or args.mmse or args.neg_distill or args.teacher_neg != "none":
            raise StageError("--rel, --mmse and --teacher-neg need the teacher (--distill > 0)")
        return {}
    if (args.mmse or args.neg_distill) and args.teacher_neg == "none":
        raise StageError("--mmse and --neg-distill need --teacher-neg")
    if args.teacher_neg != "none":
        from common import teacher_negatives
        teacher_negatives.attach(ts, corpus, args.teacher_neg, device, args.teacher_neg_skip,
                                 args.teacher_neg_depth, args.teacher_neg_fn_margin, basis)
    return {"rel": args.rel, "rel_tau_t": args.rel_tau_t, "rel_tau_s": args.rel_tau_s, "mmse": args.mmse,
            "neg_distill": args.neg_distill}


def main(argv=None, on_saved=None):
    """on_saved(epoch): called after each epoch's resumable state is saved (tests kill the run there)."""
    p = cli.parser(__doc__)
    p.add_argument("--encoder", default=DEFAULT_CONFIG["encoder"], choices=["avg", "gru"])
    p.add_argument("--out-dim", type=cli.positive_int, default=DEFAULT_CONFIG["out_dim"], help="size of the semantic part")
    p.add_argument("--lex-dim", type=cli.nonneg_int_zero_means("off"), default=DEFAULT_CONFIG["lex_dim"],
                   help="size of the lexical-identity part (0: off); the index stores out-dim + lex-dim")
    p.add_argument("--lex-scale", type=cli.positive_float, default=DEFAULT_CONFIG["lex_scale"])
    p.add_argument("--shared-towers", action="store_true", help="one tower for queries and passages")
    p.add_argument("--train-emb", action="store_true", help="fine-tune the word vectors (sparse gradients)")
    p.add_argument("--no-token-weights", action="store_true", help="plain mean instead of learned IDF weights")
    p.add_argument("--gru-hidden", type=cli.positive_int, default=DEFAULT_CONFIG["gru_hidden"])
    p.add_argument("--temperature", type=cli.positive_float, default=DEFAULT_CONFIG["temperature"])
    p.add_argument("--weight-fn", type=cli.nonneg_int_zero_means("off: a free weight per word"), default=0,
                   help="pooling weights = IDF + an MLP (this hidden size) of the word vector, shared by all "
                        "words; checkpoints bake it into the per-word table")
    cli.add_train(p, epochs=10, lr=1e-3, lr_emb=1e-2)
    add_teacher_similarity_args(p)
    cli.add_device(p)
    cli.add_wandb(p)
    p.add_argument("--out", default="s04_model.pt", help="checkpoint name under --data-dir")
    args = p.parse_args(argv)
    t = cli.Timer()
    device = cli.setup_torch(args)
    ddp, device = distributed.setup(device)  # under torchrun: this process's rank and device
    main_rank = ddp is None or ddp.main       # rank 0 alone prints, logs and writes files
    say = print if main_rank else (lambda *a, **k: None)
    d = args.data_dir
    corpus = load_corpus(d)
    em = require(d / "embeddings.npy")
    check_lineage(em, "vocab", corpus.vocab_manifest, script("s03"))
    tm = require(d / "triplets.parquet")
    check_lineage(tm, "queries", require(d / "queries.parquet"), script("s01"))
    emb = load_embeddings(d) if not args.train_emb else np.load(d / "embeddings.npy")
    ts = train_set(corpus, pq.read_table(d / "triplets.parquet"), "train")
    if len(ts) == 0:
        raise StageError("no training triplets (no train query has a selected passage): check s00's report")
    vs = validation_set(corpus, "validation", args.val_pool, args.seed)
    cfg = dict(encoder=args.encoder, out_dim=args.out_dim, lex_dim=args.lex_dim, lex_scale=args.lex_scale,
               shared=args.shared_towers, freeze_emb=not args.train_emb, token_weights=not args.no_token_weights,
               gru_hidden=args.gru_hidden, temperature=args.temperature, embeddings=em["fingerprint"],
               **corpus.token_limits,  # s02's limits: every later encoder reads them from the checkpoint
               **({"weight_fn": args.weight_fn} if args.weight_fn else {}))
    if args.distill:
        with distributed.main_first(ddp):  # rank 0 fills data/teacher/, the others read it
            attach_teacher(ts, corpus, args.distill_pairs, device, log=say)
    basis, head_init = head_start(ts, corpus, emb, args.out_dim, args.encoder)
    distill = args.distill if basis is not None else 0.0
    if args.distill and basis is None:
        say(f"warning: {len(ts):,} pairs cannot give {args.out_dim} teacher directions: training on labels only")
    if distill:
        project_teacher(ts, basis)
        if args.distill_passages:
            with distributed.main_first(ddp):
                attach_passages(ts, corpus, args.distill_passages, basis, device, log=say)
    with distributed.main_first(ddp):  # rank 0 fills data/teacher/ (and BM25 for --teacher-neg bm25) first
        aux = teacher_similarity_setup(args, ts, corpus, device, distill, basis)
    # a random head (no teacher projection) or GRU starts from the seed: the same in every process
    # and every run (a resumed run knows its own by the model it starts from)
    torch.manual_seed(args.seed)
    model = TwoTowerModel(len(corpus.vocab), emb.shape[1], cfg, embeddings=emb, idf=corpus.vocab.idf(),
                          stems=stem_map(corpus.vocab.words), seed=args.seed, head_init=head_init)
    world = 1 if ddp is None else ddp.world_size
    say(f"training on {device}" + (f" x {world} processes ({ddp.backend})" if ddp else "") +
        f": {len(ts):,} triplets, validation {len(vs.q_rows):,} queries "
        f"against {len(vs.pool_rows):,} passages; model {cfg}")
    run = tracking.init(args.wandb if main_rank else "disabled", args.wandb_project, d, "s04_train_tower",
                        vars(args) | cfg | {"world_size": world})
    out = d / args.out
    inputs = {"vocab": corpus.vocab_manifest, "triplets": tm, "embeddings": em}
    resume = Resume(resume_path(out), run_key("s04", args, inputs, world))
    best, hist = fit(model, corpus, ts, vs, device, out, args.epochs, args.batch_size, args.lr, args.lr_emb,
                     loss=args.loss, margin=args.margin, seed=args.seed, run=run,
                     patience=args.patience, distill=distill, aux=aux, lr_vectors=args.lr_vectors,
                     log=say, ddp=ddp, resume=resume, on_saved=on_saved,
                     meta={"vocab_fingerprint": corpus.vocab.fingerprint, "stage": "s04",
                           # s07 distils through the same projection; none when s04 had no teacher
                           **({"teacher_basis": torch.from_numpy(basis)} if distill else {})})
    run.log({"best_val_mrr@10": best["mrr@10"]})
    run.finish()
    if main_rank:
        write_manifest(out, "s04_train_tower.py", {k: str(v) for k, v in vars(args).items()},
                       inputs=inputs, stats={"val": best, "history": hist, "world_size": world})
        resume.clear()  # after the manifest: a run killed before it finishes at once on a re-run
        print(f"best validation MRR@10 {best['mrr@10']:.4f} at epoch {best['epoch']}")
        cli.done(f"{out}", t)
    distributed.teardown(ddp)


if __name__ == "__main__":
    run_main(main)
