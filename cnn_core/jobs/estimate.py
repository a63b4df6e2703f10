"""The Train page's "Estimate time per epoch": a few real training steps, run in a subprocess
(``python -m cnn_core estimate ... --out FILE``) so the web server never trains in its own process. The child's
file is the protocol; its output is never read, except the last ``error:`` line of one that died without a file."""

from __future__ import annotations

import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from ..config.argv import config_args
from ..config.train_config import TrainConfig
from ..core import settings
from ..core.errors import CnnError, last_error
from ..core.files import read_json

TIMEOUT = 180  # seconds: the steps are capped (training.estimate.MAX_STEP_PIXELS); data loading may take a while


def measure(cfg: TrainConfig, timeout: float = TIMEOUT) -> dict[str, Any]:
    """The estimate of ``cfg`` as a dict (training.estimate.Estimate's fields), measured in a child process;
    a one-line CnnError when it cannot be made."""
    env = settings.child_env(settings.runs_root(), Path(__file__).resolve().parents[2])
    start = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="cnn-estimate-") as tmp:
        out = Path(tmp) / "estimate.json"
        argv = [sys.executable, "-m", "cnn_core", "estimate", *config_args(cfg), "--out", str(out)]
        try:
            p = subprocess.run(argv, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
                               timeout=timeout, stdin=subprocess.DEVNULL)
        except subprocess.TimeoutExpired:
            raise CnnError(f"the estimate took longer than {timeout:g} s; try a smaller model or batch") from None
        est = read_json(out)
    if est.pop("state", None) != "finished":
        raise CnnError(str(est.get("message") or last_error(p.stderr)
                           or f"the estimate ended without a result (exit code {p.returncode})"))
    # what a training process spends before its first batch (starting Python and torch, loading the data, building
    # the model) is about what this one spent outside its timed steps
    est["startup_seconds"] = max(0.0, time.monotonic() - start - float(est.get("measuring_seconds") or 0.0))
    return est
