"""The Train page's time estimate runs in a child process, never in the web server's; the child's file is the
protocol, never its output."""

from __future__ import annotations

import subprocess

import pytest

from cnn_core.config import TrainConfig
from cnn_core.core.errors import CnnError, last_error
from cnn_core.jobs import estimate as job_estimate


def test_the_page_estimate_runs_in_another_process(monkeypatch):
    """jobs.estimate.measure: `python -m cnn_core estimate --out FILE` in a child; its errors are one line."""
    calls = []
    real_run = job_estimate.subprocess.run
    monkeypatch.setattr(job_estimate.subprocess, "run", lambda argv, **kw: calls.append(argv) or real_run(argv, **kw))
    est = job_estimate.measure(TrainConfig(model="lenet5", dataset="digits", batch_size=64, precision="fp32"))
    assert est["seconds_per_epoch"] > 0 and est["measured_batch"] == 64 and "state" not in est
    assert calls and calls[0][1:4] == ["-m", "cnn_core", "estimate"] and "--out" in calls[0]
    assert "--json" not in calls[0]  # its output is not the protocol
    with pytest.raises(CnnError, match="unknown dataset 'nosuch'"):
        job_estimate.measure(TrainConfig(model="lenet5", dataset="nosuch"))


def test_the_estimate_is_read_from_its_file_not_its_output(monkeypatch):
    """A child that prints an estimate but writes no file has not answered; one that died says its last error."""
    def printed_only(argv, **kw):
        return subprocess.CompletedProcess(argv, 0, stdout='{"seconds_per_epoch": 1.0}', stderr="")

    monkeypatch.setattr(job_estimate.subprocess, "run", printed_only)
    with pytest.raises(CnnError, match=r"ended without a result \(exit code 0\)"):
        job_estimate.measure(TrainConfig(model="lenet5", dataset="digits"))

    def died(argv, **kw):
        return subprocess.CompletedProcess(argv, 1, stdout="", stderr="warming up\nerror: out of cheese\n=====\n")

    monkeypatch.setattr(job_estimate.subprocess, "run", died)
    with pytest.raises(CnnError, match="^out of cheese$"):
        job_estimate.measure(TrainConfig(model="lenet5", dataset="digits"))


def test_last_error_prefers_the_clis_own_line():
    assert last_error("Traceback\nERROR: rank 1 lost\nerror: disk full\n  raise X\n=====\n") == "disk full"
    assert last_error("killed\n-----\n\n") == "killed"
    assert last_error("") == "" and last_error(None) == ""  # type: ignore[arg-type]
