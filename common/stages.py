"""The one registry of stages: each script, what it writes, and whether the pipeline runs it.

Everything that needs the stages' order or "which script makes this file" reads it from here:
error messages ("run s02_tkn_ms_marco.py first"), run_pipeline.sh (`python -m common.stages`),
the benchmark and the reproduction runner.
"""
from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(frozen=True)
class Stage:
    key: str                      # "s04"
    script: str                   # "s04_train_tower.py"
    outputs: tuple = field(default=())  # file or folder names under the data dir
    in_pipeline: bool = True      # run_pipeline.sh runs it (s09 is interactive, s11 a server)


STAGES: tuple[Stage, ...] = (
    Stage("s00", "s00_combine_data.py", ("queries.parquet", "passages.parquet")),
    Stage("s01", "s01_create_triplets.py", ("triplets.parquet",)),
    Stage("s02", "s02_tkn_ms_marco.py", ("vocab.pkl", "queries_tok.parquet", "passages_tok.parquet")),
    Stage("s03", "s03_build_embedding_matrix.py", ("embeddings.npy",)),
    Stage("s04", "s04_train_tower.py", ("s04_model.pt", "teacher")),
    Stage("s05", "s05_encode_docs_to_chromadb.py", ("active_index.json", "passage_text")),
    Stage("s06", "s06_mine_hard_negatives.py", ("hard_negatives.parquet",)),
    Stage("s07", "s07_train_w_hard_negatives.py", ("s07_model.pt", "best_model.pt")),
    Stage("s08", "s08_reencode_all.py", ("indexes",)),
    Stage("s09", "s09_query_retrieve.py", (), in_pipeline=False),
    Stage("s10", "s10_evaluate.py", ("reports", "hybrid.json", "bm25", "external")),
    Stage("s11", "s11_serve.py", (), in_pipeline=False),  # the web page and API: a server, run by hand
)
BY_KEY = {s.key: s for s in STAGES}
PIPELINE = tuple(s for s in STAGES if s.in_pipeline)


def script(key: str) -> str:
    """"s04" -> "s04_train_tower.py"."""
    return BY_KEY[key].script


def producer(name: str) -> str | None:
    """The script that writes the file or folder `name` (its last path part), or None."""
    for s in STAGES:
        if name in s.outputs:
            return s.script
    return None


if __name__ == "__main__":  # the pipeline's scripts in order, one per line (run_pipeline.sh)
    for s in PIPELINE:
        print(s.script)
