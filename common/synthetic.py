"""A synthetic MS MARCO-shaped dataset, written exactly in the Hugging Face `microsoft/ms_marco`
parquet layout, plus a matching GloVe text file. Tests use it small; bench/ uses it at v1.1 scale
(N = 100,000 queries x 10 passages).

Each query asks about two topic words; its selected passage mentions both among filler words, and
its other nine candidates share one of them (Bing-like near misses). Retrieval is learnable but
not trivial.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

HF_SCHEMA = pa.schema([
    ("answers", pa.list_(pa.string())),
    ("passages", pa.struct([("is_selected", pa.list_(pa.int32())), ("passage_text", pa.list_(pa.string())),
                            ("url", pa.list_(pa.string()))])),
    ("query", pa.string()), ("query_id", pa.int32()), ("query_type", pa.string()),
    ("wellFormedAnswers", pa.list_(pa.string())),
])
_SYL = ["ka", "lo", "mi", "ne", "ru", "ta", "vo", "zi", "pe", "sa", "do", "fu", "gi", "ha", "jo", "be"]
FILLER = ["the", "a", "of", "and", "is", "in", "to", "for", "with", "on", "was", "by", "it", "that", "are"]


def words(n: int) -> list[str]:
    """n distinct pronounceable lowercase pseudo-words."""
    out, i = [], 0
    while len(out) < n:
        j, w = i, ""
        while True:
            w += _SYL[j % 16]
            j //= 16
            if j == 0:
                break
        out.append(w + "x")
        i += 1
    return out


def write(out_dir: Path, n_queries: int, passages_per_query: int = 10, n_topics: int | None = None,
          passage_words: int = 50, dim: int = 16, seed: int = 0, splits=(0.8, 0.1, 0.1),
          single_passage_eval: bool = False, glove_name: str = "glove.test.txt",
          topic_words: list[str] | None = None, config: str = "v1.1") -> dict:
    """Write {out_dir}/<config>/{train,validation,test}-00000-of-00001.parquet and {out_dir}/<glove_name>.
    `topic_words` (e.g. real GloVe words) replaces the pseudo-words, for realistic tokenising cost.
    config "v2.1": the test split is unlabelled, as on the Hub (every is_selected is -1)."""
    rng = np.random.default_rng(seed)
    out_dir = Path(out_dir)
    (out_dir / config).mkdir(parents=True, exist_ok=True)
    n_topics = n_topics or max(50, n_queries // 2)
    vocab = np.array(topic_words[:n_topics] if topic_words else words(n_topics))
    n_topics = len(vocab)
    filler = np.array(FILLER)
    n_train = int(n_queries * splits[0])
    n_val = int(n_queries * splits[1])
    bounds = {"train": (0, n_train), "validation": (n_train, n_train + n_val), "test": (n_train + n_val, n_queries)}
    for split, (a, b) in bounds.items():
        rows = []
        n = b - a
        keys = rng.integers(0, n_topics, size=(n, 2))
        for i in range(n):
            k1, k2 = vocab[keys[i]]
            qid = a + i + 1
            query = f"what is the {k1} of {k2}"
            k_cand = 1 if (single_passage_eval and split != "train") else passages_per_query
            texts, sel = [], []
            pos_at = int(rng.integers(k_cand))
            for j in range(k_cand):
                body = list(filler[rng.integers(0, len(filler), passage_words)])
                if j == pos_at:
                    body[rng.integers(passage_words)] = k1
                    body[rng.integers(passage_words)] = k2
                    body[rng.integers(passage_words)] = f"{k1}."
                else:
                    body[rng.integers(passage_words)] = k1 if j % 2 else k2
                    body[rng.integers(passage_words)] = vocab[rng.integers(n_topics)]
                body.append(f"passage{qid}x{j}")  # keeps texts distinct
                texts.append(" ".join(body))
                sel.append(-1 if (config == "v2.1" and split == "test") else 1 if j == pos_at else 0)
            rows.append({"answers": [f"{k1} {k2}"], "passages": {"is_selected": sel, "passage_text": texts,
                                                                  "url": [f"http://example.com/{qid}/{j}" for j in range(k_cand)]},
                         "query": query, "query_id": qid, "query_type": "description", "wellFormedAnswers": []})
        pq.write_table(pa.Table.from_pylist(rows, schema=HF_SCHEMA), out_dir / config / f"{split}-00000-of-00001.parquet")
    glove = out_dir / glove_name
    all_words = list(vocab) + list(filler) + ["what", ".", "?"]
    vecs = rng.normal(0, 0.5, size=(len(all_words), dim)).astype(np.float32)
    with open(glove, "w") as f:
        for w, v in zip(all_words, vecs):
            f.write(w + " " + " ".join(f"{x:.4f}" for x in v) + "\n")
    return {"dir": str(out_dir), "glove": str(glove), "splits": {k: b - a for k, (a, b) in bounds.items()}}
