"""Background training jobs for the app: each job is one ``python -m cnn_core train`` (or ``sweep``) subprocess.

A subprocess rather than a thread, so that a crash or a memory blow-up in training never takes the web server
down, the GIL never slows the pages, and Cancel is a plain SIGTERM (the CLI stops at the next batch, marks the
run cancelled and keeps last.pt).

The protocol is the run folder, never the process's output: the manager makes the run folder and writes its
config.json (state "queued"), then starts ``train --prepared RUN`` on it; the training process writes status.json,
progress.json and metrics.csv, and the job's outcome is what status.json says when the process ends. Only a
process that died before it could say anything is described by the manager (with its last stderr line). A
sweep works alike through its folder's sweep.json and status.json (``sweep --continue NAME``).

One job per device at a time: later requests wait in a first-in-first-out queue (at most ``QUEUE_LIMIT`` per
device; beyond that they are refused). The manager is process-wide, shared by every browser session, so every
student sees the same running job and queue. A sweep is one job that trains its runs one after another, in
the same queue as single runs.

The device is shared with everything else on the machine through its lock (``engine.devicelock``): a job starts
only when the manager can take its device's lock, which it then hands to the subprocess; while a training from a
terminal holds it, the job waits in its queue (checked every ``lock_poll`` seconds). A manager adopts, when it
starts, the trainings that still run without it (a previous server's jobs, trainings from a terminal): they
show as running jobs that can be cancelled, and keep their device busy until they end.

Each job has an ``owner`` (an opaque id; "" is the operator), also written into its run's status.json. Visitors
may cancel only their own jobs, resume or train further (``resume(..., epochs=N)``) only the runs their own jobs
trained, and are held to ``limits.Limits``: every training and sweep of theirs comes with its estimated time;
the operator is only held to the free-disk floor.
"""

from __future__ import annotations

import atexit
import itertools
import os
import signal
import subprocess
import sys
import threading
import time
from collections import deque
from pathlib import Path
from typing import Any

from ..config.train_config import TrainConfig
from ..core import settings
from ..core.errors import CnnError, last_error
from ..core.files import alive
from ..data import check_dataset_name
from ..engine.device import pick_device
from ..engine.devicelock import LOCK_FD_ENV, DeviceBusy, DeviceLock, Holder, holders, try_lock
from ..engine.distributed import launch_command, per_rank_batch
from ..models.registry import get_spec
from ..runs.rundir import ACTIVE, FINISHED, RunDir, list_run_dirs, runs_root
from ..workflows.sweep import SweepPlan, open_sweep, plan_sweep, read_sweep, sweep_manifest, sweep_status, sweeps_root
from . import lrfind
from .job import Job
from .limits import check_disk, check_step_pixels, check_visitor, checkpoint_bytes, load_limits

QUEUE_LIMIT = 3  # waiting jobs per device; a class of 30 should not stack up a day of training
LOCK_POLL = 3.0  # seconds between looks at a device another process trains on
ADOPTED_POLL = 0.5  # seconds between looks at an adopted process (not our child: no wait() for it)


def plan_sweep_job(grid: dict[str, list[Any]], base: TrainConfig, name: str | None = None,
                   root: str | os.PathLike | None = None) -> SweepPlan:
    """What submit_sweep would queue (name, run names), checked; raises its refusal without queueing."""
    get_spec(base.model)  # a typo is refused here, not in a subprocess minutes later
    return plan_sweep(grid, base.replace(**{k: v[0] for k, v in grid.items() if v}), name, root)


class JobManager:
    """Starts, queues, watches and cancels training subprocesses; thread-safe. Made once per server process:
    it adopts the trainings running without it in ``root`` (default: the runs folder) when ``adopt``."""

    def __init__(self, command: list[str] | None = None, queue_limit: int = QUEUE_LIMIT,
                 keep_finished: int = 20, root: str | os.PathLike | None = None, adopt: bool = True,
                 lock_poll: float = LOCK_POLL) -> None:
        self.command = command or [sys.executable, "-m", "cnn_core"]
        self.queue_limit = queue_limit
        self.keep_finished = keep_finished
        self.lock_poll = lock_poll
        self._lock = threading.RLock()
        self._jobs: dict[str, Job] = {}
        self._queues: dict[str, deque[str]] = {}
        self._running: dict[str, str] = {}  # device -> job id
        self._ids = itertools.count(1)
        self._threads: list[threading.Thread] = []
        self._retry: dict[str, threading.Timer] = {}  # device -> the next look at a lock held elsewhere
        if adopt:
            self.adopt(root)

    # ------------------------------------------------------------------------------------------- requests

    def submit(self, cfg: TrainConfig, name: str | None = None, root: str | os.PathLike | None = None,
               nproc: int = 1, owner: str = "", operator: bool = True,
               estimated_seconds: float | None = None) -> Job:
        """Start ``cfg`` now if its device is free, else queue it. Its run folder is made at once (config.json,
        state "queued"), which reserves the name. With ``nproc`` > 1 the job runs under torchrun, one process
        per GPU (``distributed.launch_command``). A visitor (not ``operator``) is held to the limits."""
        get_spec(cfg.model)  # a typo is refused here, not in a subprocess minutes later
        check_dataset_name(cfg.dataset)  # and so is one in the dataset's name (loading it is the process's work)
        _check_nproc(nproc, cfg.batch_size)
        device = str(pick_device(cfg.device))
        root_path = runs_root(root).resolve()
        disk = checkpoint_bytes(cfg)
        with self._lock:
            self._check_room(device)
            self._admit(owner, operator, root_path, disk, estimated_seconds)
            run = RunDir.create(root_path, name, cfg.model, cfg.dataset)
            run.write_config(cfg.to_dict())
            run.update_status(state="queued", pid=os.getpid(), message=f"waiting for {device}", owner=owner)
            job = Job(f"job-{next(self._ids)}", run.name, root_path, device, ["train", "--prepared", run.name],
                      cfg.epochs, nproc=nproc, owner=owner, dataset=cfg.dataset)
            return self._enqueue(job)

    def submit_sweep(self, grid: dict[str, list[Any]], base: TrainConfig, name: str | None = None,
                     root: str | os.PathLike | None = None, owner: str = "", operator: bool = True,
                     estimated_seconds: float | None = None) -> Job:
        """Queue a sweep like a training job. Every combination and every existing run is checked here, so a
        bad grid is refused now with the sweep's own message; then the sweep's folder is written
        (sweep.json) and ``sweep --continue NAME`` trains it. ``estimated_seconds`` is the whole sweep's."""
        root_path = runs_root(root).resolve()
        plan = plan_sweep_job(grid, base, name, root_path)
        device = str(pick_device(base.device))
        disk = len(plan.runs) * checkpoint_bytes(base)
        with self._lock:
            if any(j.kind == "sweep" and j.run == plan.name and j.root == root_path and j.active
                   for j in self._jobs.values()):
                raise CnnError(f"sweep {plan.name} is already running or waiting in the queue")
            busy = sorted(set(plan.runs) & self.active_runs(root_path))
            if busy:
                raise CnnError(f"run {busy[0]} of this sweep is already running or waiting in the queue")
            self._check_room(device)
            self._admit(owner, operator, root_path, disk, estimated_seconds, runs=len(plan.runs))
            open_sweep(plan, root_path)
            job = Job(f"job-{next(self._ids)}", plan.name, root_path, device, ["sweep", "--continue", plan.name],
                      base.epochs, kind="sweep", runs=plan.runs, owner=owner, dataset=base.dataset)
            return self._enqueue(job)

    def submit_lr_find(self, cfg: TrainConfig, root: str | os.PathLike | None = None, owner: str = "",
                       operator: bool = True) -> Job:
        """Find a learning rate for ``cfg`` (``python -m cnn_core lr-find``) as a job in its device's queue, held
        to the same limits as a training; ``job.result()`` reads its outcome (jobs.lrfind). It is not timed: its
        cost is its fixed number of steps, each of a visitor's no larger than the time estimate's cap."""
        get_spec(cfg.model)  # a typo is refused here, not in a subprocess
        device = str(pick_device(cfg.device))
        root_path = runs_root(root).resolve()
        if not operator:
            check_step_pixels(cfg)
        with self._lock:
            self._check_room(device)
            self._admit(owner, operator, root_path, 0, None, timed=False)
            return self._enqueue(lrfind.new_job(f"job-{next(self._ids)}", cfg, root_path, device, owner))

    def resume(self, run: str, root: str | os.PathLike | None = None, nproc: int = 1, owner: str = "",
               operator: bool = True, estimated_seconds: float | None = None, epochs: int | None = None) -> Job:
        """Continue a stopped run from its last.pt with its own saved options (with any number of processes).
        With ``epochs``, up to that many epochs in all: a finished run trains further (``train --resume RUN
        --epochs N``). Either changes a run someone trained, so a visitor may continue only a run a job of theirs
        trained (its status.json names them), the operator any; either way it is admitted like a new job, its
        ``estimated_seconds`` those of the epochs still to train."""
        run_dir = RunDir.resolve(run, runs_root(root).resolve())
        saved = run_dir.config()
        if not saved:
            raise CnnError(f"run {run_dir.name} has no readable config.json; it cannot be resumed")
        cfg = TrainConfig.from_dict(saved)
        _check_nproc(nproc, cfg.batch_size)
        info = run_dir.info()
        if info.state == "running":
            raise CnnError(f"run {run_dir.name} is still running")
        if not run_dir.has("last"):
            raise CnnError(f"run {run_dir.name} has no last.pt to continue from (it never finished an epoch); "
                           "train a new run with its options instead")
        if epochs is None and info.state in FINISHED:
            raise CnnError(f"run {run_dir.name} has already finished its {info.epochs_run} epochs; train it "
                           "further with more epochs instead")
        if not may_continue(run_dir, owner, operator):
            raise CnnError(f"run {run_dir.name} was not trained by a job of yours; only its owner or the operator can "
                           f"{'train it further' if epochs is not None else 'resume it'} (train a new run instead)")
        if epochs is not None:
            _check_extension(run_dir, info.epochs_run, epochs)
        device = str(pick_device(cfg.device))
        with self._lock:
            if run_dir.name in self.active_runs(run_dir.root):
                raise CnnError(f"run {run_dir.name} is already running or waiting in the queue")
            self._check_room(device)
            self._admit(owner, operator, run_dir.root.resolve(), 0, estimated_seconds)  # its checkpoints exist
            more = ["--epochs", str(epochs)] if epochs is not None else []
            job = Job(f"job-{next(self._ids)}", run_dir.name, run_dir.root.resolve(), device,
                      ["train", "--resume", run_dir.name, *more], epochs or cfg.epochs,
                      start_epoch=info.epochs_run + 1, resume=True, extending=epochs is not None, nproc=nproc,
                      owner=owner, dataset=cfg.dataset)
            return self._enqueue(job)

    def cancel(self, job_id: str, by: str = "", operator: bool = True) -> Job:
        """A queued job leaves the queue; a running one gets SIGTERM and stops at its next batch. Asked a
        second time (a process stuck before its first batch), it is killed; last.pt is kept either way.
        A visitor (``by``, not ``operator``) may cancel only their own jobs."""
        with self._lock:
            job = self._get(job_id)
            if not operator and not (by and by == job.owner):
                raise CnnError(f"{job.id} ({job.run}) is not yours to cancel; ask its owner or the operator")
            if job.state == "queued":
                self._queues[job.device].remove(job.id)
                job.state, job.message, job.ended = "cancelled", "cancelled before it started", time.time()
                if job.kind == "train" and not job.resume:
                    job.run_dir.discard_unstarted()  # nothing trained: no run folder left behind
            elif job.state == "running" and job.pid is not None:
                self._signal(job)
            return job

    def _signal(self, job: Job) -> None:
        """SIGTERM first, SIGKILL when asked again. Our own child's whole session gets SIGKILL (torchrun's
        workers with it); an adopted process gets the signal alone (a terminal's shell shares its group)."""
        assert job.pid is not None
        sig = signal.SIGKILL if job._cancelled else signal.SIGTERM
        job._cancelled = True
        job.message = "stopping at the next batch" if sig == signal.SIGTERM else "stopping now"
        try:  # SIGTERM to torchrun reaches its workers; SIGKILL would not, so it goes to the whole session
            if sig == signal.SIGKILL and job._proc is not None:
                os.killpg(job._proc.pid, sig)
            else:
                os.kill(job.pid, sig)
        except ProcessLookupError:
            pass

    def adopt(self, root: str | os.PathLike | None = None) -> list[Job]:
        """Show the trainings that run without this manager (a previous server's jobs, trainings from a terminal)
        as running jobs: progress and Cancel work, and their device is busy until they end. A sweep is
        adopted as a sweep; its current run is not adopted twice."""
        root_path = runs_root(root).resolve()
        locks = holders()
        by_pid: dict[int | None, Job] = {}
        for job in [*self._orphan_runs(root_path), *self._orphan_sweeps(root_path)]:
            by_pid[job.pid] = job  # a sweep's process also trains its current run: the sweep wins
        with self._lock:
            return [self._adopt_one(job, locks) for job in by_pid.values()]

    def _orphan_runs(self, root: Path) -> list[Job]:
        jobs = []
        for run in list_run_dirs(root):
            st = run.status()
            pid = _live_pid(st) if st.get("state") == "running" else None
            if pid and pid not in self._pids():
                cfg = run.config()
                jobs.append(Job("", run.name, root, str(cfg.get("device", "auto")), [], int(cfg.get("epochs", 1)),
                                dataset=str(cfg.get("dataset", "")), adopted=True, _pid=pid))
        return jobs

    def _orphan_sweeps(self, root: Path) -> list[Job]:
        folder = sweeps_root(root)
        jobs = []
        for d in sorted(folder.iterdir()) if folder.is_dir() else []:
            try:
                st, meta = sweep_status(d.name, root), sweep_manifest(d.name, root)
            except CnnError:  # not a sweep's name: no sweep of ours
                continue
            pid = _live_pid(st) if st.get("state") == "running" else None
            if pid and pid not in self._pids() and meta.get("runs"):
                base = meta.get("base") or {}
                jobs.append(Job("", d.name, root, str(base.get("device", "auto")), [], int(base.get("epochs", 1)),
                                kind="sweep", runs=list(meta["runs"]), dataset=str(base.get("dataset", "")),
                                adopted=True, _pid=pid))
        return jobs

    def _adopt_one(self, job: Job, locks: list[Holder]) -> Job:
        """Device and origin from the lock its process holds (a torchrun job's: the launcher, which we signal)."""
        names = {job.run, *job.runs, f"sweep {job.run}"}
        holder = next((h for h in locks if h.pid == job.pid or (h.run in names and h.root in ("", str(job.root)))),
                      None)
        if holder is not None:
            job.device, job.origin = holder.device, holder.origin
            job._pid = holder.pid if holder.origin == "app" else job._pid
        else:
            job.device, job.origin = _device_name(job.device), "terminal"
        job.id, job.state, job.started = f"job-{next(self._ids)}", "running", time.time()
        job.message = "started from a terminal" if job.origin == "terminal" else "started by an earlier server"
        self._jobs[job.id] = job
        self._running.setdefault(job.device, job.id)
        self._thread(self._watch_adopted, job)
        return job

    def _pids(self) -> set[int]:
        with self._lock:
            return {j.pid for j in self._jobs.values() if j.active and j.pid is not None}

    def _admit(self, owner: str, operator: bool, root: Path, disk_bytes: int, estimated_seconds: float | None,
               runs: int = 1, timed: bool = True) -> None:
        """Refuse, before anything is written, what the limits (limits.json, read now) do not allow: a visitor's
        ``timed`` job (a training, a sweep) without its estimate too."""
        limits = load_limits()
        check_disk(root, disk_bytes, limits)
        if operator:
            return
        mine = [j for j in self._jobs.values() if j.owner == owner and j.active]
        check_visitor(limits, sum(j.state == "queued" for j in mine), sum(j.state == "running" for j in mine),
                      estimated_seconds, runs, timed)

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
        root_path = runs_root(root).resolve()
        with self._lock:
            return {r for j in self._jobs.values() if j.active and j.root == root_path for r in j.runs}

    def datasets_in_use(self) -> set[str]:
        """The datasets the running and waiting jobs train on: an upload among them must not expire under them."""
        with self._lock:
            return {j.dataset for j in self._jobs.values() if j.active and j.dataset}

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
        """Empty the queues and SIGTERM the running jobs (they keep last.pt and can be resumed). Adopted ones
        are not this server's to stop: a training from a terminal outlives the server."""
        with self._lock:
            for timer in self._retry.values():
                timer.cancel()
            for job in self.queued():
                self.cancel(job.id)
            running = [j for j in self.running() if not j.adopted]
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
        tail = [*job.args, "--quiet"]
        if job.nproc == 1:
            return [*self.command, *tail]
        return launch_command(tail[1:], job.nproc)

    # ------------------------------------------------------------------------------------------- internals

    def _get(self, job_id: str) -> Job:
        job = self._jobs.get(job_id)
        if job is None:
            raise CnnError(f"no job {job_id!r}")
        return job

    def _check_room(self, device: str) -> None:
        """Refuse a request the device's queue has no room for, before anything is written for it."""
        q = self._queues.get(device, deque())
        if len(q) >= self.queue_limit:
            busy = self._jobs[self._running[device]].run if device in self._running else "another training"
            raise CnnError(f"{device} is busy with {busy} and {len(q)} more runs are waiting; try again "
                           "when one has finished (or cancel one)")

    def _enqueue(self, job: Job) -> Job:
        self._jobs[job.id] = job
        self._forget_old()
        self._queues.setdefault(job.device, deque()).append(job.id)
        self._start_next(job.device)
        return job

    def _forget_old(self) -> None:
        ended = [j for j in sorted(self._jobs.values(), key=lambda j: j.submitted) if not j.active]
        for j in ended[:max(0, len(ended) - self.keep_finished)]:
            del self._jobs[j.id]

    def _start_next(self, device: str) -> None:
        q = self._queues.get(device)
        while q and device not in self._running:
            lock = self._take_device(device, self._jobs[q[0]])
            if lock is None:
                return  # another process trains on it: the queue waits, and looks again soon
            job = self._jobs[q.popleft()]
            try:
                job._proc = self._popen(job, lock)
            except OSError as e:
                lock.release()
                job.state, job.message, job.ended = "failed", f"could not start training: {e}", time.time()
                if job.kind == "train" and not job.resume:
                    job.run_dir.discard_unstarted()
                continue
            lock.describe(pid=job._proc.pid)  # the child holds it now (and until it exits), not this server
            lock.close()
            job.state, job.started, job.message = "running", time.time(), ""
            self._running[device] = job.id
            self._thread(self._watch, job)

    def _take_device(self, device: str, job: Job) -> DeviceLock | None:
        """The device's lock for ``job``, or None (and a look again in ``lock_poll`` s) while another holds it."""
        try:
            return try_lock(device, run=job.run, origin="app", root=str(job.root))
        except DeviceBusy as e:
            job.message = f"waiting: {e.holder.describe().replace(' is busy ', ' is ')}, started elsewhere"
            if device not in self._retry or not self._retry[device].is_alive():
                timer = threading.Timer(self.lock_poll, self._look_again, args=(device,))
                timer.daemon = True
                self._retry[device] = timer
                timer.start()
            return None

    def _look_again(self, device: str) -> None:
        with self._lock:
            self._retry.pop(device, None)
            self._start_next(device)

    def _popen(self, job: Job, lock: DeviceLock) -> subprocess.Popen:
        """The job's process, holding the device lock through an inherited descriptor (``LOCK_FD_ENV``)."""
        env = {**settings.child_env(job.root, Path(__file__).resolve().parents[2]), LOCK_FD_ENV: str(lock.fd)}
        job.root.mkdir(parents=True, exist_ok=True)
        job.argv = self.command_line(job)
        return subprocess.Popen(job.argv, env=env, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                                stderr=subprocess.PIPE, text=True, encoding="utf-8", errors="replace",
                                start_new_session=True, pass_fds=(lock.fd,))

    def _thread(self, target: Any, job: Job) -> None:
        t = threading.Thread(target=target, args=(job,), name=f"watch-{job.id}", daemon=True)
        self._threads.append(t)
        t.start()

    def _watch_adopted(self, job: Job) -> None:
        """Not our child, so no wait(): look until its process is gone, then settle it from its folder."""
        while job.pid is not None and alive(job.pid):
            time.sleep(ADOPTED_POLL)
        with self._lock:
            self._finish(job, None, "")
            if self._running.get(job.device) == job.id:
                del self._running[job.device]
            self._start_next(job.device)

    def _watch(self, job: Job) -> None:
        assert job._proc is not None
        _, err = job._proc.communicate()
        with self._lock:
            self._finish(job, job._proc.returncode, err)
            self._running.pop(job.device, None)
            self._start_next(job.device)

    def _finish(self, job: Job, rc: int | None, err: str) -> None:
        """Settle the job's final state from its folder: the run's status.json (a sweep's, its status.json and
        table). Only a process that ended without saying anything there is described here, from its exit
        code and last stderr line. The state changes last, after the folder agrees: a caller waiting on
        ``job.active`` then finds both done."""
        said = [ln.strip() for ln in (err or "").splitlines() if ln.strip().strip("=-")]
        last = last_error(err)
        how = "exit code unknown" if rc is None else f"exit code {rc}" if rc > 0 else f"killed by signal {-rc}"
        if rc:
            job.stderr_tail = said[-25:]
        if job.kind == "lr-find":  # jobs.lrfind.LrFindJob: its result file says how it ended
            state, message, summary = job.settle(last or f"the learning-rate finder ended without a message ({how})")
        elif job.kind == "sweep":
            st = sweep_status(job.run, job.root)
            state = str(st.get("state") or "")
            if state not in ("finished", "cancelled"):
                state = "cancelled" if job._cancelled else "failed"
                message = ("cancelled; start the same sweep again to continue" if job._cancelled else
                           last or f"the sweep process ended without a message ({how})")
            else:
                message = str(st.get("message") or "")
            summary = {**st, "rows": read_sweep(job.run, job.root)}
        else:
            run = job.run_dir
            status = run.status()
            state = str(status.get("state") or "")
            if state in ACTIVE or not state:  # the process could not say it itself (killed, crashed): say it
                if job._cancelled:  # SIGTERM before the CLI set its handler (still importing): it simply ended
                    state, message = "cancelled", "cancelled; resume it to continue from last.pt"
                else:
                    state, message = "failed", last or f"the training process ended without a message ({how})"
                run.final_status(state=state, message=message, pid=None)
            else:
                message = str(status.get("message") or "")  # a finished run's is "", an early stop's says why
            summary = run.status()
            if state not in FINISHED and not job.resume and not job.adopted:  # an adopted folder is not ours
                run.discard_unstarted()  # it ended before its first epoch: the job keeps the message, no folder
        job.returncode, job.ended, job.summary, job.message = rc, time.time(), summary, message
        job.state = state


def may_continue(run: RunDir, owner: str, operator: bool) -> bool:
    """Whether ``owner`` may resume ``run`` or train it further: it changes a run someone trained, so the operator
    any run, a visitor only one that a job of theirs trained (its status.json names them: runs have no other
    owner)."""
    return operator or (bool(owner) and run.status().get("owner") == owner)


def _check_extension(run: RunDir, done: int, epochs: int) -> None:
    """Refuse training ``run`` further to ``epochs`` in all when it is not more than it has done."""
    if isinstance(epochs, bool) or not isinstance(epochs, int) or epochs <= done:
        raise CnnError(f"run {run.name} has trained {done} epochs already; give a total of more than {done}")


def _live_pid(status: dict[str, Any]) -> int | None:
    """The pid a status.json names, if that process still runs and is not this one."""
    pid = status.get("pid")
    return pid if isinstance(pid, int) and pid > 0 and pid != os.getpid() and alive(pid) else None


def _device_name(preference: str) -> str:
    """An adopted training's device from its config, named as its lock would be."""
    try:
        return str(pick_device(preference))
    except CnnError:
        return preference


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
