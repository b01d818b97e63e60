"""A stage run as a real process that SIGKILLs itself part-way (tests of killed builds).

    python tests/launch.py N sXX_script.py [the stage's arguments]

imports the stage and calls its main() with an on_saved callback that kills the process after the
N-th safely recorded batch or partial graph: the fault comes from the test side, never from an
environment variable read inside the product's build loops.
"""
import importlib
import os
import signal
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def run_killed(script: str, data, after: int, *args, env=None, timeout=300):
    """Run `script` with these arguments until its `after`-th save, where it is killed (-9)."""
    e = dict(os.environ, HF_HUB_OFFLINE="1", PYTHONUNBUFFERED="1", WANDB_MODE="disabled", **(env or {}))
    return subprocess.run([sys.executable, str(Path(__file__)), str(after), script, "--data-dir", str(data), *args],
                          cwd=ROOT, capture_output=True, text=True, env=e, timeout=timeout)


def main():
    after, script, argv = int(sys.argv[1]), sys.argv[2], sys.argv[3:]
    sys.path.insert(0, str(ROOT))
    sys.argv = [str(ROOT / script), *argv]
    stage = importlib.import_module(Path(script).stem)
    from common.artifacts import run_main
    saves = [0]

    def on_saved(done):
        saves[0] += 1
        if saves[0] >= after:
            os.kill(os.getpid(), signal.SIGKILL)
    run_main(lambda: stage.main(argv, on_saved=on_saved))


if __name__ == "__main__":
    main()
