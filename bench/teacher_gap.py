"""How far the two towers are from the teacher, tower by tower, on a judged BEIR set: which tower
holds the dense model back, and how closely the passage tower follows the teacher on passages it
never saw. A measurement for choosing methods (README, "What helped and what did not"), not a stage.

    python s10_evaluate.py --beir ../shared/trec-dl-2019 --rel-level 2 --checkpoint s04_model.pt
    python bench/teacher_gap.py --data-dir data --checkpoint s04_model.pt

Exact search over the corpus of the folder s10 --beir prepared (data/external/beir-*/), with the
checkpoint's own index vectors, nDCG@10 with the graded labels (ranx), for each pairing of
questions and passages: the student's, the teacher's seen through the checkpoint's 192-d
projection (the head's starting directions, the space distillation pulls towards), and the
teacher's own 384-d vectors. Then the mean cosine of the student's passage vector to the
teacher's projected one, on that corpus and on the training passages the teacher embedded for s04
(data/teacher/). The teacher encodes the whole corpus once (TREC DL 2019's 10,852 passages: about 6
minutes on 2 cores), cached under --cache.
"""
from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--data-dir", type=Path, default=Path("data"))
    p.add_argument("--checkpoint", default="s04_model.pt")
    p.add_argument("--dataset", default="trec-dl-2019", help="the BEIR folder's name, as s10 --beir named it")
    p.add_argument("--cache", type=Path, default=Path(tempfile.gettempdir()) / "msmarco-teacher-gap")
    args = p.parse_args()
    import pyarrow.parquet as pq
    import torch
    from ranx import Qrels, Run, evaluate
    from common import teacher
    from common.beir import Dataset
    from common.corpus import load_corpus, load_vocab
    from common.encode import encode_rows, encode_texts, load_embeddings
    from common.model import TwoTowerModel
    torch.set_num_threads(2)
    cpu = torch.device("cpu")
    d = args.data_dir
    exts = sorted((d / "external").glob(f"beir-{args.dataset}-*"))
    if not exts:
        sys.exit(f"no {d}/external/beir-{args.dataset}-*: run s10_evaluate.py --beir first")
    ext = exts[0]
    ckpt = torch.load(d / args.checkpoint, map_location="cpu", weights_only=False)
    if ckpt.get("teacher_basis") is None:
        sys.exit(f"{args.checkpoint} was trained without the teacher: nothing to compare")
    basis = ckpt["teacher_basis"].numpy()
    model = TwoTowerModel.from_checkpoint(ckpt, load_embeddings(d, ckpt["config"].get("embeddings")))
    vec = sorted((ext / "indexes").glob(f"passages-{ckpt['fingerprint']}-*.vectors.npy"))
    if not vec:
        sys.exit(f"no index of {args.checkpoint} in {ext}: run s10_evaluate.py --beir ... --checkpoint {args.checkpoint}")
    S_p = np.load(vec[0], mmap_mode="r")[:, :model.config["out_dim"]].astype(np.float32)
    S_p /= np.maximum(np.linalg.norm(S_p, axis=1, keepdims=True), 1e-9)
    ds = Dataset(ext)
    vocab, _ = load_vocab(ext)
    S_q, _ = encode_texts(model, vocab, ds.texts, cpu)
    S_q = S_q[:, :model.config["out_dim"]]
    S_q /= np.maximum(np.linalg.norm(S_q, axis=1, keepdims=True), 1e-9)

    unit = lambda x: x / np.maximum(np.linalg.norm(x, axis=1, keepdims=True), 1e-9)
    cache = args.cache / f"{ext.name}.npy"
    if cache.exists():
        T_p = np.load(cache)
    else:
        t = pq.read_table(ext / "passages.parquet", columns=["title", "text"]).to_pydict()
        texts = [f"{a} {b}".strip() if a else b for a, b in zip(t["title"], t["text"])]
        print(f"teacher: encoding {len(texts):,} passages (cached in {cache}) ...", flush=True)
        T_p = teacher.encode_texts(texts, progress=True).astype(np.float32)
        cache.parent.mkdir(parents=True, exist_ok=True)
        np.save(cache, T_p)
    T_q = teacher.encode_texts(ds.texts).astype(np.float32)
    P_p, P_q = unit(T_p @ basis), unit(T_q @ basis)
    docs = pq.read_table(ext / "passages.parquet", columns=["doc_id"])["doc_id"].to_pylist()
    qrels = Qrels(ds.qrels)

    def ndcg(Q, V):
        sc = Q @ V.T
        top = np.argsort(-sc, axis=1)[:, :100]
        run = {q: {docs[j]: float(sc[i, j]) for j in top[i]} for i, q in enumerate(ds.qids)}
        return evaluate(qrels, Run(run), "ndcg@10")

    print(f"{args.checkpoint} on {ext.name} ({len(ds.qids)} questions, {len(docs):,} passages), nDCG@10:")
    print("| questions | passages | nDCG@10 |\n|---|---|---:|")
    for qn, Q, pn, V in (("student", S_q, "student", S_p), ("teacher, projected", P_q, "student", S_p),
                         ("student", S_q, "teacher, projected", P_p),
                         ("teacher, projected", P_q, "teacher, projected", P_p),
                         ("teacher (384-d)", unit(T_q), "teacher (384-d)", unit(T_p))):
        print(f"| {qn} | {pn} | {ndcg(Q, V):.4f} |")
    print(f"mean cos(student passage, teacher projected): {ext.name} corpus {float((S_p * P_p).sum(1).mean()):.4f}", end="")

    # the training passages the teacher embedded (s04's cache): positives of labelled pairs, and the rest
    z = np.load(d / "teacher" / "passages.npz")
    corpus = load_corpus(d)
    ok = np.isin(z["ids"], corpus.ptok.ids)
    ids, tv = z["ids"][ok], z["vecs"][ok].astype(np.float32)
    sv = unit(encode_rows(model, corpus.ptok, corpus.pidx.rows(ids), "passage", cpu)[:, :model.config["out_dim"]])
    cs = (sv * unit(tv @ basis)).sum(1)
    pos = np.isin(ids, pq.read_table(d / "triplets.parquet", columns=["pos_id"])["pos_id"].to_numpy())
    print(f"; training positives {cs[pos].mean():.4f} ({pos.sum():,})"
          + (f", other training passages {cs[~pos].mean():.4f} ({(~pos).sum():,})" if (~pos).any() else ""))


if __name__ == "__main__":
    main()
