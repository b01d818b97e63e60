"""Weights & Biases logging. A mode is always set: offline by default, so a run never waits at a
login prompt or hangs looking for a network; `--wandb online` syncs live, `disabled` does nothing.
Offline runs land in data/wandb/ and can be uploaded later with `wandb sync data/wandb/offline-run-*`."""
from __future__ import annotations

import os
from pathlib import Path


class _Null:
    def log(self, *a, **k):
        pass

    def finish(self, *a, **k):
        pass

    def __getattr__(self, name):
        return lambda *a, **k: None


def init(mode: str, project: str, data_dir: Path, job: str, config: dict):
    if mode == "disabled":
        return _Null()
    os.environ.setdefault("WANDB_SILENT", "true")
    os.environ["WANDB_MODE"] = mode
    if mode == "offline":
        os.environ.setdefault("WANDB_DISABLE_GIT", "true")
    import wandb
    wdir = Path(data_dir).resolve()
    wdir.mkdir(parents=True, exist_ok=True)
    try:
        return wandb.init(project=project, job_type=job, name=job, dir=str(wdir), mode=mode,
                          config={k: (str(v) if isinstance(v, Path) else v) for k, v in config.items()},
                          settings=wandb.Settings(console="off", silent=True, init_timeout=60))
    except Exception as e:  # logging must never cost a training run
        print(f"warning: W&B could not start ({type(e).__name__}: {e}); continuing without it")
        return _Null()
