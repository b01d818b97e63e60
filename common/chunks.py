"""Results of a long loop kept chunk by chunk, so that a stage killed part-way resumes at its
last finished chunk (s06's searches, s10's runs of each system).

<folder>/state.json names what the chunks belong to (settings, inputs); another key wipes them.
Each chunk is one .npz, written atomically: a killed write leaves no chunk, never half of one.
"""
from __future__ import annotations

import shutil
from pathlib import Path
from typing import Callable

import numpy as np

from .artifacts import StageError, atomic_path, read_json_artifact, write_json


class Chunks:
    def __init__(self, folder: Path, key: dict):
        self.folder, self.key = Path(folder), key
        state = None
        try:
            state = read_json_artifact(self.folder / "state.json", missing_ok=True)
        except StageError:
            pass  # damaged: start again
        if state is None or state.get("key") != key:
            shutil.rmtree(self.folder, ignore_errors=True)
            self.folder.mkdir(parents=True, exist_ok=True)
            write_json(self.folder / "state.json", {"key": key})

    def path(self, i: int) -> Path:
        return self.folder / f"chunk-{i:06d}.npz"

    def count(self) -> int:
        return len(list(self.folder.glob("chunk-*.npz")))

    def save(self, i: int, **arrays):
        with atomic_path(self.path(i)) as tmp:
            with open(tmp, "wb") as fh:
                np.savez(fh, **arrays)

    def load(self, i: int) -> dict | None:
        """Chunk i's arrays; None when it is not there (or damaged: then it is done again)."""
        if not self.path(i).exists():
            return None
        try:
            with np.load(self.path(i)) as z:
                return {k: z[k] for k in z.files}
        except (OSError, ValueError):
            self.path(i).unlink(missing_ok=True)
            return None

    def each(self, n: int, compute: Callable[[int], dict], what: str, log=print, on_saved=None):
        """Yields chunk i = compute(i) for i < n, each kept as soon as it is computed; the chunks
        already kept are loaded, not computed again. on_saved(i) after each new one (tests kill
        there). Only the chunk in hand is held: the caller keeps what it needs of each."""
        from tqdm import tqdm
        if self.count():
            log(f"{what}: resuming, {self.count()} of {n} chunks already done")
        for i in tqdm(range(n), desc=what, unit="chunk", mininterval=1, disable=n < 2):
            got = self.load(i)
            if got is None:
                got = compute(i)
                self.save(i, **got)
                if on_saved is not None:
                    on_saved(i)
            yield got

    def run(self, n: int, compute: Callable[[int], dict], what: str, log=print, on_saved=None) -> list[dict]:
        """Every chunk of each(), as a list."""
        return list(self.each(n, compute, what, log, on_saved))

    def clear(self):
        shutil.rmtree(self.folder, ignore_errors=True)


def ragged(rows: list, dtype) -> dict:
    """Rows of different lengths -> {"flat", "lengths"} (how a chunk keeps them)."""
    return {"flat": np.concatenate(rows).astype(dtype) if rows else np.zeros(0, dtype),
            "lengths": np.array([len(r) for r in rows], np.int64)}


def unragged(flat: np.ndarray, lengths: np.ndarray) -> list[np.ndarray]:
    """ragged()'s inverse: the rows, as arrays."""
    return np.split(flat, np.cumsum(lengths)[:-1]) if len(lengths) else []
