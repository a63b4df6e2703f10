"""The Train page's learning-rate finder as a job: ``python -m cnn_core lr-find ... --out FILE`` in the device's
queue like a training, under its device lock. Its file (training.lr_curve.ResultFile, in the state folder) is
how the app learns its progress and result; its output is never read. It trains no run: nothing lands in the
runs folder, and only the newest ``KEEP`` results are kept."""

from __future__ import annotations

import secrets
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..config.argv import config_args
from ..config.train_config import TrainConfig
from ..core import settings
from ..training.lr_curve import ResultFile
from .job import Job

KIND = "lr-find"
KEEP = 20  # result files; each is a few kilobytes


@dataclass
class LrFindJob(Job):
    """A finder job: ``run`` names its result file; progress and outcome come from that file."""

    @property
    def file(self) -> ResultFile:
        return ResultFile(settings.lr_find_dir() / f"{self.run}.json")

    def status(self) -> dict[str, Any]:
        return self.file.read()

    def metrics(self) -> list[dict[str, float]]:
        return []

    def progress(self) -> dict[str, Any]:
        """``step``, ``steps`` and ``elapsed`` while it runs; {} before its first batch."""
        st = self.status() if self.state == "running" else {}
        return st if st.get("state") == "running" and "step" in st else {}

    def fraction_done(self) -> float:
        p = self.progress()
        return int(p["step"]) / max(1, int(p["steps"])) if p else (1.0 if self.state == "finished" else 0.0)

    def eta_seconds(self) -> float | None:
        p, f = self.progress(), self.fraction_done()
        return float(p["elapsed"]) * (1 - f) / f if p and f > 0.01 else None

    def result(self) -> dict[str, Any] | None:
        """The curve and the suggestion (training.lr_curve.LrFindResult's fields), once finished."""
        st = self.status()
        return st if st.get("state") == "finished" else None

    def settle(self, said: str) -> tuple[str, str, dict[str, Any]]:
        """State, message and summary when the process has ended: from its file; ``said`` (its last stderr line,
        or how it ended) only when the file does not say."""
        st = self.status()
        if st.get("state") == "finished":
            return "finished", "", st
        if self._cancelled:
            state, message = "cancelled", "cancelled"
        else:
            state, message = "failed", str(st.get("message") or "") if st.get("state") == "failed" else said
        self.file.write(state, message=message)
        return state, message, self.status()


def new_job(job_id: str, cfg: TrainConfig, root: Path, device: str, owner: str) -> LrFindJob:
    """A queued finder job for ``cfg``; its result file is written now (state "queued", with the config)."""
    _forget_old()
    name = f"lr-find-{time.strftime('%Y%m%d-%H%M%S')}-{secrets.token_hex(2)}"
    job = LrFindJob(job_id, name, root, device, [], 1, kind=KIND, owner=owner, dataset=cfg.dataset)
    job.file.write("queued", config=cfg.to_dict())  # every later write keeps the config
    job.args = ["lr-find", *config_args(cfg), "--out", str(job.file.path.resolve()), "--json"]
    return job


def _forget_old() -> None:
    folder = settings.lr_find_dir()
    files = sorted(folder.glob("lr-find-*.json"), key=lambda p: p.stat().st_mtime) if folder.is_dir() else []
    for p in files[:max(0, len(files) - KEEP + 1)]:
        p.unlink(missing_ok=True)
