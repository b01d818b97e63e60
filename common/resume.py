"""Resuming a killed training run (s04, s07) from its last finished epoch.

After each epoch `fit` (common/train.py) writes the whole state of the run, atomically, to
`data/<checkpoint name>.resume.pt`: the trainable weights, both optimisers' states, the numpy
generator that shuffles the epochs and torch's generators, the epoch, the best so far (and the
fingerprint of the checkpoint that holds it), the history and the epochs since the best. A re-run
with the same settings and inputs loads it and continues with the next epoch ("resuming at epoch
k"); as nothing else draws on those generators, the run ends with the same weights, bit for bit,
as one that was never interrupted. The state names what it belongs to: a hash of the stage's
settings (all but --data-dir and the W&B options), its inputs' fingerprints, the number of
processes and the fingerprint of the model it started from; any difference, or a best checkpoint
that is no longer the one it saved, and the run starts over. The stage deletes the file once it
has written the checkpoint's manifest (a run killed between the two finishes at once on a re-run).

Under torchrun every process holds the same weights and optimiser states (their gradients are
reduced to the same values), so rank 0 alone writes the state and every rank reads it.
"""
from __future__ import annotations

import hashlib
import json
from pathlib import Path

import numpy as np
import torch

from .artifacts import atomic_path


def resume_path(out: Path) -> Path:
    out = Path(out)
    return out.with_name(out.name.removesuffix(".pt") + ".resume.pt")


class Resume:
    """The resumable state of one training run at `path`; `key` says what the run is (settings,
    input fingerprints: any JSON-able dict)."""

    def __init__(self, path: Path, key: dict):
        self.path = Path(path)
        self.key_parts = key
        self.key = None
        self.best_fp = None

    def _key(self, model) -> str:
        blob = json.dumps(self.key_parts, sort_keys=True, default=str) + model.fingerprint()
        return hashlib.sha1(blob.encode()).hexdigest()

    def load(self, model, opts, rng: np.random.Generator, best_path: Path, log=print) -> dict | None:
        """Restore the state into model, opts and rng when it is this run's; returns
        {epoch, best, history, since_best, stopped} or None (start from epoch 1). Called before
        any training, with the model as it starts."""
        self.key = self._key(model)
        if not self.path.exists():
            return None
        try:
            st = torch.load(self.path, map_location="cpu", weights_only=True)
        except Exception as e:
            log(f"{self.path} is not readable ({type(e).__name__}): starting over")
            return None
        if not isinstance(st, dict) or st.get("key") != self.key:
            log(f"{self.path} is another run's (other settings or inputs): starting over")
            return None
        if st["best"].get("epoch", -1) >= 1 and _fingerprint(best_path) != st["best_fp"]:
            log(f"{best_path} is not the best checkpoint {self.path} recorded: starting over")
            return None
        missing, unexpected = model.load_state_dict(st["model"], strict=False)
        if unexpected or any(not k.endswith("emb.weight") for k in missing):
            log(f"{self.path} does not fit the model: starting over")
            return None
        for o, s in zip(opts, st["opts"]):
            o.load_state_dict(s)
        rng.bit_generator.state = st["numpy_rng"]
        torch.set_rng_state(st["torch_rng"])
        if torch.cuda.is_available() and len(st.get("cuda_rng") or []) == torch.cuda.device_count():
            torch.cuda.set_rng_state_all(st["cuda_rng"])  # (nothing in training draws on them: kept for form)
        self.best_fp = st["best_fp"]
        return {k: st[k] for k in ("epoch", "best", "history", "since_best", "stopped")}

    def save(self, model, opts, rng: np.random.Generator, epoch: int, best: dict, history: list,
             since_best: int, stopped: bool, improved: bool):
        if improved:
            self.best_fp = model.fingerprint()
        st = {"key": self.key, "epoch": epoch, "best": best, "history": history, "since_best": since_best,
              "stopped": stopped, "best_fp": self.best_fp,
              "model": {k: v.detach().cpu() for k, v in model._stored().items()},
              "opts": [o.state_dict() for o in opts],
              "numpy_rng": rng.bit_generator.state, "torch_rng": torch.get_rng_state(),
              "cuda_rng": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else []}
        with atomic_path(self.path) as tmp:
            torch.save(st, tmp)

    def clear(self):
        self.path.unlink(missing_ok=True)


def _fingerprint(path: Path) -> str | None:
    try:
        return torch.load(path, map_location="cpu", weights_only=True).get("fingerprint")
    except Exception:
        return None


def run_key(stage: str, args, inputs: dict, world_size: int) -> dict:
    """What a training run is, for its resumable state: the stage, every setting but where the data
    lives and how W&B logs, the inputs' fingerprints (manifests or fingerprints), the processes."""
    skip = {"data_dir", "wandb", "wandb_project"}
    return {"stage": stage, "settings": {k: str(v) for k, v in sorted(vars(args).items()) if k not in skip},
            "inputs": {k: (v["fingerprint"] if isinstance(v, dict) else v) for k, v in inputs.items()},
            "world_size": world_size}
