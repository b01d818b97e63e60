"""Results of a long loop kept chunk by chunk, so that a stage killed part-way resumes at its
last finished chunk (s06's searches; the same for any stage whose loop is a list of chunks).

<folder>/state.json names what the chunks belong to (settings, inputs); another key wipes them.
Each chunk is one .npz, written atomically: a killed write leaves no chunk, never half of one.
"""
from __future__ import annotations

import shutil
from pathlib import Path

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

    def done(self, i: int) -> bool:
        return self.path(i).exists()

    def count(self) -> int:
        return len(list(self.folder.glob("chunk-*.npz")))

    def save(self, i: int, **arrays):
        with atomic_path(self.path(i)) as tmp:
            with open(tmp, "wb") as fh:
                np.savez(fh, **arrays)

    def load(self, i: int) -> dict:
        try:
            with np.load(self.path(i)) as z:
                return {k: z[k] for k in z.files}
        except (OSError, ValueError) as e:  # damaged: this chunk is done again
            self.path(i).unlink(missing_ok=True)
            raise KeyError(i) from e

    def clear(self):
        shutil.rmtree(self.folder, ignore_errors=True)


def unragged(flat: np.ndarray, lengths: np.ndarray) -> list:
    """(flat, lengths) -> the lists they hold (a chunk's ragged results)."""
    return [x.tolist() for x in np.split(flat, np.cumsum(lengths)[:-1])] if len(lengths) else []
