"""A job: one request to train (a run, a sweep, a learning-rate search) as the job manager queues, starts and
follows it. Its own module so that kinds of job built on it (jobs.lrfind) need not import the manager."""

from __future__ import annotations

import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..runs.rundir import ACTIVE, FINISHED, RunDir
from ..workflows.sweep import sweep_dir


@dataclass
class Job:
    """One training request. ``state`` follows the run: queued, running, then finished, stopped_early,
    cancelled, diverged or failed. For a sweep (``kind == "sweep"``), ``run`` is the sweep's name, ``runs`` its
    run names in training order, and the state is the sweep's: finished (whatever each run did) or cancelled.
    A learning-rate finder's (``kind == "lr-find"``) is a jobs.lrfind.LrFindJob: finished, cancelled or failed."""

    id: str
    run: str
    root: Path
    device: str
    args: list[str]
    epochs: int
    start_epoch: int = 1  # a resumed run continues here
    state: str = "queued"
    message: str = ""
    submitted: float = field(default_factory=time.time)
    started: float | None = None
    ended: float | None = None
    returncode: int | None = None
    summary: dict[str, Any] = field(default_factory=dict)
    resume: bool = False
    extending: bool = False  # a resumed run trained beyond its planned epochs (train --resume RUN --epochs N)
    kind: str = "train"
    runs: list[str] = field(default_factory=list)  # a sweep's runs; [run] for a training job
    nproc: int = 1  # processes under torchrun (one per GPU); 1 is the plain CLI
    argv: list[str] = field(default_factory=list)  # the command line, once started
    stderr_tail: list[str] = field(default_factory=list)  # a failed process's last words, for diagnosis
    owner: str = ""  # who asked (an opaque per-visitor id); "" is the operator or the command line
    dataset: str = ""  # what it trains on (its config's): an upload in use must not expire
    origin: str = "app"  # "app" (a job of a server) or "terminal" (python -m cnn_core from a shell)
    adopted: bool = False  # started before this server: watched by its pid, not our child
    _proc: subprocess.Popen | None = field(default=None, repr=False)
    _pid: int | None = field(default=None, repr=False)  # an adopted job's process
    _cancelled: bool = field(default=False, repr=False)

    def __post_init__(self) -> None:
        self.runs = self.runs or [self.run]

    @property
    def run_dir(self) -> RunDir:
        """The run training now: a sweep's current run, else (between a sweep's runs) its sweep folder, which
        holds no run files."""
        if self.kind != "sweep":
            return RunDir(self.root / self.run)
        current = self.current_run()
        return RunDir(self.root / current) if current else RunDir(sweep_dir(self.run, self.root))

    def current_run(self) -> str | None:
        """The run this job's process is training (or was, when it died); None for a sweep between runs."""
        if self.kind != "sweep":
            return self.run
        if self.pid is None:
            return None
        for name in self.runs:
            st = RunDir(self.root / name).status()
            if st.get("state") == "running" and st.get("pid") == self.pid:
                return name
        return None

    @property
    def active(self) -> bool:
        return self.state in ACTIVE

    @property
    def pid(self) -> int | None:
        return self._proc.pid if self._proc is not None else self._pid

    def progress(self) -> dict[str, Any]:
        """The latest progress.json (epoch, epochs, batch, batches, loss, elapsed); {} before the first batch.
        A sweep's adds ``run``, ``index`` (from 1) and ``total``: which of its runs is training."""
        if self.state != "running":
            return {}
        if self.kind != "sweep":
            return self.run_dir.progress()
        current = self.current_run()
        if current is None:
            return {}
        return {**RunDir(self.root / current).progress(), "run": current, "index": self.runs.index(current) + 1,
                "total": len(self.runs)}

    def status(self) -> dict[str, Any]:
        return self.run_dir.status()

    def metrics(self) -> list[dict[str, float]]:
        return self.run_dir.metrics()

    def fraction_done(self) -> float:
        """Share of this job's epochs done, counting the current epoch's batches."""
        if self.state != "running":
            return 1.0 if self.state in FINISHED else 0.0
        p = self.progress()
        if self.kind == "sweep":
            if not p:
                return 0.0
            epochs = max(1, int(p.get("epochs", self.epochs)))
            within = (int(p.get("epoch", 1)) - 1 + int(p.get("batch", 0)) / max(1, int(p.get("batches", 1)))) / epochs
            return min(1.0, max(0.0, (p["index"] - 1 + within) / p["total"]))
        if not p:
            return 0.0
        todo = max(1, self.epochs - self.start_epoch + 1)
        done = (int(p.get("epoch", self.start_epoch)) - self.start_epoch
                + int(p.get("batch", 0)) / max(1, int(p.get("batches", 1))))
        return min(1.0, max(0.0, done / todo))

    def eta_seconds(self) -> float | None:
        """Seconds left, from the time this process has trained so far; None until there is something to go by."""
        p = self.progress()
        f = self.fraction_done()
        if not p or f <= 0.01:
            return None
        # a sweep's runs each start their own clock: go by the whole job's time
        elapsed = time.time() - (self.started or time.time()) if self.kind == "sweep" else float(p.get("elapsed", 0.0))
        return elapsed * (1 - f) / f

    def to_dict(self) -> dict[str, Any]:
        return {"id": self.id, "run": self.run, "device": self.device, "state": self.state, "message": self.message,
                "epochs": self.epochs, "submitted": self.submitted, "started": self.started, "ended": self.ended,
                "resume": self.resume, "extending": self.extending, "kind": self.kind, "runs": list(self.runs),
                "owner": self.owner, "origin": self.origin, "adopted": self.adopted}
