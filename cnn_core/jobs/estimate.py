"""The Train page's "Estimate time per epoch": a few real training steps, run in a subprocess
(``python -m cnn_core estimate ... --json``) so the web server never trains in its own process."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from ..config.argv import config_args
from ..config.train_config import TrainConfig
from ..core import settings
from ..core.errors import CnnError

TIMEOUT = 180  # seconds: the steps are capped (training.estimate.MAX_STEP_PIXELS); data loading may take a while


def measure(cfg: TrainConfig, timeout: float = TIMEOUT) -> dict[str, Any]:
    """The estimate of ``cfg`` as a dict (training.estimate.Estimate's fields), measured in a child process;
    a one-line CnnError when it cannot be made."""
    argv = [sys.executable, "-m", "cnn_core", "estimate", *config_args(cfg), "--json"]
    env = settings.child_env(settings.runs_root(), Path(__file__).resolve().parents[2])
    start = time.monotonic()
    try:
        p = subprocess.run(argv, env=env, capture_output=True, text=True, timeout=timeout, stdin=subprocess.DEVNULL)
    except subprocess.TimeoutExpired:
        raise CnnError(f"the estimate took longer than {timeout:g} s; try a smaller model or batch") from None
    if p.returncode != 0:
        said = [ln.strip() for ln in p.stderr.splitlines() if ln.strip()]
        mine = [ln[len("error: "):] for ln in said if ln.startswith("error: ")]
        raise CnnError((mine or said or [f"the estimate failed (exit code {p.returncode})"])[-1])
    try:
        est = json.loads(p.stdout.strip().splitlines()[-1])
    except (ValueError, IndexError):
        raise CnnError("the estimate printed no result") from None
    # what a training process spends before its first batch (starting Python and torch, loading the data, building
    # the model) is about what this one spent outside its timed steps
    est["startup_seconds"] = max(0.0, time.monotonic() - start - float(est.get("measuring_seconds") or 0.0))
    return est
