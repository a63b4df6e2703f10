"""Background training jobs for the app: each job is one ``python -m cnn_core train`` (or ``sweep``) subprocess.

A subprocess rather than a thread, so that a crash or a memory blow-up in training never takes the web server
down, the GIL never slows the pages, and Cancel is a plain SIGTERM (the CLI stops at the next batch, marks the
run cancelled and keeps last.pt). The training process reports through its run folder (status.json,
progress.json, metrics.csv), so the page reads the same files whether it started the job or not.

One job per device at a time: later requests wait in a first-in-first-out queue (at most ``QUEUE_LIMIT`` per
device; beyond that they are refused). The manager is process-wide, shared by every browser session, so every
student sees the same running job and queue. A sweep is one job that trains its runs one after another, in
the same queue as single runs.
"""

from __future__ import annotations

import atexit
import itertools
import json
import os
import signal
import subprocess
import sys
import threading
import time
from collections import deque
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from . import checkpoints as ck
from .config import TrainConfig
from .distributed import launch_command, per_rank_batch
from .engine import pick_device
from .errors import CnnError
from .sweep import SWEEPS, SweepPlan, expand_grid, plan_sweep

QUEUE_LIMIT = 3  # waiting jobs per device; a class of 30 should not stack up a day of training
ACTIVE = ("queued", "running")


def train_args(cfg: TrainConfig) -> list[str]:
    """The ``train`` flags that rebuild ``cfg`` exactly (the CLI owns that mapping)."""
    from .cli import config_args

    return config_args(cfg)


def plan_sweep_job(grid: dict[str, list[Any]], base: TrainConfig, name: str | None = None,
                   root: str | os.PathLike | None = None) -> SweepPlan:
    """What submit_sweep would queue (name, run names), checked; raises its refusal without queueing."""
    from .cli_experiments import cli_grid
    from .models import get_spec

    get_spec(base.model)  # a typo is refused here, not in a subprocess minutes later
    full = cli_grid(grid, base)  # what the subprocess reads back from the flags, so the same run names
    expand_grid(full)  # an empty or doubled list is refused in the grid's own words
    return plan_sweep(full, base.replace(**{k: v[0] for k, v in full.items()}), name, root)


@dataclass
class Job:
    """One training request. ``state`` follows the run: queued, running, then finished, stopped_early,
    cancelled, diverged or failed. For a sweep (``kind == "sweep"``), ``run`` is the sweep's name, ``runs`` its
    run names in training order, and the state is the sweep's: finished (whatever each run did) or cancelled."""

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
    kind: str = "train"
    runs: list[str] = field(default_factory=list)  # a sweep's runs; [run] for a training job
    nproc: int = 1  # processes under torchrun (one per GPU); 1 is the plain CLI
    argv: list[str] = field(default_factory=list)  # the command line, once started
    stderr_tail: list[str] = field(default_factory=list)  # a failed process's last words, for diagnosis
    _proc: subprocess.Popen | None = field(default=None, repr=False)
    _cancelled: bool = field(default=False, repr=False)

    def __post_init__(self) -> None:
        self.runs = self.runs or [self.run]

    @property
    def run_dir(self) -> Path:
        """The folder of the run training now: a sweep's current run, else its sweep folder (no run files)."""
        if self.kind != "sweep":
            return self.root / self.run
        current = self.current_run()
        return self.root / current if current else self.root / SWEEPS / self.run

    def current_run(self) -> str | None:
        """The run this job's process is training (or was, when it died); None for a sweep between runs."""
        if self.kind != "sweep":
            return self.run
        if self.pid is None:
            return None
        for name in self.runs:
            st = ck.read_json(self.root / name / "status.json")
            if st.get("state") == "running" and st.get("pid") == self.pid:
                return name
        return None

    @property
    def active(self) -> bool:
        return self.state in ACTIVE

    @property
    def pid(self) -> int | None:
        return self._proc.pid if self._proc is not None else None

    def progress(self) -> dict[str, Any]:
        """The latest progress.json (epoch, epochs, batch, batches, loss, elapsed); {} before the first batch.
        A sweep's adds ``run``, ``index`` (from 1) and ``total``: which of its runs is training."""
        if self.state != "running":
            return {}
        if self.kind != "sweep":
            return ck.read_json(self.run_dir / "progress.json")
        current = self.current_run()
        if current is None:
            return {}
        return {**ck.read_json(self.root / current / "progress.json"), "run": current,
                "index": self.runs.index(current) + 1, "total": len(self.runs)}

    def status(self) -> dict[str, Any]:
        return ck.read_json(self.run_dir / "status.json")

    def metrics(self) -> list[dict[str, float]]:
        return ck.read_metrics(self.run_dir)

    def fraction_done(self) -> float:
        """Share of this job's epochs done, counting the current epoch's batches."""
        if self.state != "running":
            return 1.0 if self.state in ("finished", "stopped_early") else 0.0
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
                "resume": self.resume, "kind": self.kind, "runs": list(self.runs)}


class JobManager:
    """Starts, queues, watches and cancels training subprocesses; thread-safe."""

    def __init__(self, command: list[str] | None = None, queue_limit: int = QUEUE_LIMIT,
                 keep_finished: int = 20) -> None:
        self.command = command or [sys.executable, "-m", "cnn_core"]
        self.queue_limit = queue_limit
        self.keep_finished = keep_finished
        self._lock = threading.RLock()
        self._jobs: dict[str, Job] = {}
        self._queues: dict[str, deque[str]] = {}
        self._running: dict[str, str] = {}  # device -> job id
        self._ids = itertools.count(1)
        self._threads: list[threading.Thread] = []

    # ------------------------------------------------------------------------------------------- requests

    def submit(self, cfg: TrainConfig, name: str | None = None, root: str | os.PathLike | None = None,
               nproc: int = 1) -> Job:
        """Start ``cfg`` now if its device is free, else queue it. The run name is reserved at once. With
        ``nproc`` > 1 the job runs under torchrun, one process per GPU (``distributed.launch_command``)."""
        from .models import get_spec

        get_spec(cfg.model)  # a typo is refused here, not in a subprocess minutes later
        _check_nproc(nproc, cfg.batch_size)
        args = train_args(cfg)
        device = str(pick_device(cfg.device))
        root_path = ck.runs_root(root).resolve()
        with self._lock:
            run = self._free_name(root_path, ck.validate_run_name(name) if name else
                                  ck.default_run_name(cfg.model, cfg.dataset))
            job = Job(f"job-{next(self._ids)}", run, root_path, device, ["train", *args, "--name", run],
                      cfg.epochs, nproc=nproc)
            return self._enqueue(job)

    def submit_sweep(self, grid: dict[str, list[Any]], base: TrainConfig, name: str | None = None,
                     root: str | os.PathLike | None = None) -> Job:
        """Queue a sweep (``python -m cnn_core sweep``) like a training job. Every combination and every
        existing run is checked here, so a bad grid is refused now with the sweep's own message. The settings
        not in ``grid`` that have a sweep flag are swept at one value, as the command line does."""
        from .cli_experiments import sweep_args

        root_path = ck.runs_root(root).resolve()
        plan = plan_sweep_job(grid, base, name, root_path)
        args = sweep_args(grid, base)
        device = str(pick_device(base.device))
        with self._lock:
            if any(j.kind == "sweep" and j.run == plan.name and j.root == root_path and j.active
                   for j in self._jobs.values()):
                raise CnnError(f"sweep {plan.name} is already running or waiting in the queue")
            busy = sorted(set(plan.runs) & self.active_runs(root_path))
            if busy:
                raise CnnError(f"run {busy[0]} of this sweep is already running or waiting in the queue")
            job = Job(f"job-{next(self._ids)}", plan.name, root_path, device, ["sweep", *args, "--name", plan.name],
                      base.epochs, kind="sweep", runs=plan.runs)
            return self._enqueue(job)

    def resume(self, run: str, root: str | os.PathLike | None = None, nproc: int = 1) -> Job:
        """Continue a stopped run from its last.pt with its own saved options (with any number of processes)."""
        root_path = ck.runs_root(root).resolve()
        run_dir = ck.resolve_run(run, root_path)
        saved = ck.read_json(run_dir / "config.json")
        if not saved:
            raise CnnError(f"run {run_dir.name} has no readable config.json; it cannot be resumed")
        cfg = TrainConfig.from_dict(saved)
        _check_nproc(nproc, cfg.batch_size)
        info = ck.run_info(run_dir)
        if info.state == "running":
            raise CnnError(f"run {run_dir.name} is still running")
        if info.state in ("finished", "stopped_early"):
            raise CnnError(f"run {run_dir.name} has already finished its {cfg.epochs} epochs; train a new run "
                           "with more epochs instead")
        with self._lock:
            if run_dir.name in self.active_runs(run_dir.parent):
                raise CnnError(f"run {run_dir.name} is already running or waiting in the queue")
            job = Job(f"job-{next(self._ids)}", run_dir.name, run_dir.parent.resolve(), str(pick_device(cfg.device)),
                      ["train", "--resume", run_dir.name], cfg.epochs, start_epoch=info.epochs_run + 1,
                      resume=True, nproc=nproc)
            return self._enqueue(job)

    def cancel(self, job_id: str) -> Job:
        """A queued job leaves the queue; a running one gets SIGTERM and stops at its next batch. Asked a
        second time (a process stuck before its first batch), it is killed; last.pt is kept either way."""
        with self._lock:
            job = self._get(job_id)
            if job.state == "queued":
                self._queues[job.device].remove(job.id)
                job.state, job.message, job.ended = "cancelled", "cancelled before it started", time.time()
            elif job.state == "running" and job._proc is not None:
                sig = signal.SIGKILL if job._cancelled else signal.SIGTERM
                job._cancelled = True
                job.message = "stopping at the next batch" if sig == signal.SIGTERM else "stopping now"
                try:  # SIGTERM to torchrun reaches its workers; SIGKILL would not, so it goes to the whole session
                    if sig == signal.SIGKILL:
                        os.killpg(job._proc.pid, sig)
                    else:
                        job._proc.send_signal(sig)
                except ProcessLookupError:
                    pass
            return job

    # ---------------------------------------------------------------------------------------------- reading

    def get(self, job_id: str) -> Job | None:
        with self._lock:
            return self._jobs.get(job_id)

    def jobs(self) -> list[Job]:
        """Every job this server knows of, newest first."""
        with self._lock:
            return sorted(self._jobs.values(), key=lambda j: j.submitted, reverse=True)

    def running(self, device: str | None = None) -> list[Job]:
        with self._lock:
            return [self._jobs[i] for d, i in self._running.items() if device is None or d == device]

    def queued(self, device: str | None = None) -> list[Job]:
        """Waiting jobs in the order they will start."""
        with self._lock:
            return [self._jobs[i] for d, q in self._queues.items() if device is None or d == device for i in q]

    def active_runs(self, root: str | os.PathLike | None = None) -> set[str]:
        """Names of the runs in ``root`` that a running or queued job trains or will train (a sweep: all)."""
        root_path = ck.runs_root(root).resolve()
        with self._lock:
            return {r for j in self._jobs.values() if j.active and j.root == root_path for r in j.runs}

    def position(self, job_id: str) -> int:
        """1 for the next job to start on its device; 0 when not queued."""
        with self._lock:
            job = self._get(job_id)
            q = self._queues.get(job.device, deque())
            return q.index(job.id) + 1 if job.id in q else 0

    def wait(self, job_id: str, timeout: float = 600) -> Job:
        """Block until the job has ended (tests, scripts)."""
        deadline = time.monotonic() + timeout
        job = self._get(job_id)
        while job.active:
            if time.monotonic() > deadline:
                raise TimeoutError(f"{job.id} ({job.run}) still {job.state} after {timeout:g}s")
            time.sleep(0.05)
        return job

    def shutdown(self, wait: float = 0.0) -> None:
        """Empty the queues and SIGTERM the running jobs (they keep last.pt and can be resumed)."""
        with self._lock:
            for job in self.queued():
                self.cancel(job.id)
            running = self.running()
            for job in running:
                if not job._cancelled:
                    self.cancel(job.id)
        deadline = time.monotonic() + wait
        for job in running:
            while job.active and time.monotonic() < deadline:
                time.sleep(0.05)

    def command_line(self, job: Job) -> list[str]:
        """The job's process: ``python -m cnn_core train ...`` (``command`` replaces the first part), or with
        ``nproc`` > 1 the torchrun form of the same train flags."""
        tail = [*job.args, "--json", "--quiet"]
        if job.nproc == 1:
            return [*self.command, *tail]
        return launch_command(tail[1:], job.nproc)

    # ------------------------------------------------------------------------------------------- internals

    def _get(self, job_id: str) -> Job:
        job = self._jobs.get(job_id)
        if job is None:
            raise CnnError(f"no job {job_id!r}")
        return job

    def _free_name(self, root: Path, base: str) -> str:
        """``base``, or base-2, base-3, ... when a run folder or a waiting job already has it."""
        taken = self.active_runs(root)
        for i in range(1, 10_000):
            name = base if i == 1 else f"{base[:58]}-{i}"
            if name not in taken and not (root / name).exists():
                return name
        raise CnnError(f"too many runs named {base!r}; choose another name")

    def _enqueue(self, job: Job) -> Job:
        q = self._queues.setdefault(job.device, deque())
        if job.device in self._running and len(q) >= self.queue_limit:
            busy = self._jobs[self._running[job.device]]
            raise CnnError(f"{job.device} is busy with {busy.run} and {len(q)} more runs are waiting; try again "
                           "when one has finished (or cancel one)")
        self._jobs[job.id] = job
        self._forget_old()
        q.append(job.id)
        self._start_next(job.device)
        return job

    def _forget_old(self) -> None:
        ended = [j for j in sorted(self._jobs.values(), key=lambda j: j.submitted) if not j.active]
        for j in ended[:max(0, len(ended) - self.keep_finished)]:
            del self._jobs[j.id]

    def _start_next(self, device: str) -> None:
        q = self._queues.get(device)
        while q and device not in self._running:
            job = self._jobs[q.popleft()]
            root = job.root
            env = dict(os.environ, CNN_CHECKPOINTS=str(root),
                       PYTHONPATH=os.pathsep.join(filter(None, [str(Path(__file__).resolve().parents[1]),
                                                                os.environ.get("PYTHONPATH")])))
            root.mkdir(parents=True, exist_ok=True)
            try:
                job.argv = self.command_line(job)
                job._proc = subprocess.Popen(job.argv, env=env,
                                             stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                                             stderr=subprocess.PIPE, text=True, encoding="utf-8", errors="replace",
                                             start_new_session=True)
            except OSError as e:
                job.state, job.message, job.ended = "failed", f"could not start training: {e}", time.time()
                continue
            job.state, job.started, job.message = "running", time.time(), ""
            self._running[device] = job.id
            t = threading.Thread(target=self._watch, args=(job,), name=f"watch-{job.id}", daemon=True)
            self._threads.append(t)
            t.start()

    def _watch(self, job: Job) -> None:
        assert job._proc is not None
        out, err = job._proc.communicate()
        with self._lock:
            self._finish(job, job._proc.returncode, out, err)
            self._running.pop(job.device, None)
            self._start_next(job.device)

    def _finish(self, job: Job, rc: int, out: str, err: str) -> None:
        """Settle the job's final state from the CLI's summary, the run's status.json and the exit code.
        The state changes last, after the run folder agrees: a caller waiting on ``job.active`` then finds
        both done."""
        lines = [ln for ln in (out or "").splitlines() if ln.strip()]
        try:
            summary = json.loads(lines[-1]) if rc == 0 and lines else {}
        except ValueError:
            summary = {}
        run_dir = job.run_dir  # a sweep's: the run its process was training, if it died mid-run
        status = ck.read_json(run_dir / "status.json")
        if rc == 0 and job.kind == "sweep":
            state = str(summary.get("state") or "finished")
            bad = [r for r in summary.get("rows", []) if r.get("state") not in ("finished", "stopped_early")]
            message = ("stopped; start the same sweep again to continue" if state == "cancelled" else
                       f"{len(bad)} of {len(job.runs)} runs did not finish: "
                       + ", ".join(sorted({str(r.get('state')) for r in bad})) if bad else "")
        elif rc == 0:
            state = str(summary.get("state") or status.get("state") or "finished")
            message = str(status.get("message", "")) if state != "finished" else ""
        else:
            # the CLI's own one-line error (from any torchrun rank) over torchrun's report and its ==== rules
            said = [ln.strip() for ln in (err or "").splitlines() if ln.strip().strip("=-")]
            mine = [ln for ln in said if ln.lower().startswith("error: ")]
            last = (mine or said)[-1][len("error: ") if mine else 0:] if said else ""
            job.stderr_tail = said[-25:]
            if job._cancelled and status.get("state") in (None, "running", "cancelled"):
                # SIGTERM before the CLI set its handler (still importing): the process simply ended
                state, message = "cancelled", "cancelled; resume it to continue from last.pt"
            elif status.get("state") == "diverged":
                state, message = "diverged", str(status.get("message") or last)
            else:
                how = f"exit code {rc}" if rc > 0 else f"killed by signal {-rc}"
                state, message = "failed", last or f"the training process ended without a message ({how})"
            if (run_dir / "config.json").is_file() and status.get("state") in (None, "running"):
                # the process could not say it itself (killed, crashed): say it for it, so the run list agrees
                status.update(state=state, message=message, pid=None, updated=time.time())
                try:
                    ck.write_json(run_dir / "status.json", status)
                except CnnError:
                    pass
        job.returncode, job.ended, job.summary, job.message = rc, time.time(), summary, message
        job.state = state


def _check_nproc(nproc: int, batch_size: int) -> None:
    """A process count that cannot run is refused at once, not by torchrun minutes later."""
    if nproc != 1:
        launch_command([], nproc)  # a whole number >= 1
        per_rank_batch(batch_size, nproc)  # the global batch must split evenly


_MANAGER: JobManager | None = None
_MANAGER_LOCK = threading.Lock()


def manager() -> JobManager:
    """The process-wide manager every app session shares."""
    global _MANAGER
    with _MANAGER_LOCK:
        if _MANAGER is None:
            _MANAGER = JobManager()
            atexit.register(_MANAGER.shutdown)  # server stops: runs stop at a batch, resumable later
        return _MANAGER
