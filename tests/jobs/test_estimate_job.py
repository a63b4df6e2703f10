"""The Train page's time estimate runs in a child process, never in the web server's."""

from __future__ import annotations

import pytest

from cnn_core.config import TrainConfig
from cnn_core.core.errors import CnnError
from cnn_core.jobs import estimate as job_estimate


def test_the_page_estimate_runs_in_another_process(monkeypatch):
    """jobs.estimate.measure: `python -m cnn_core estimate --json` in a child; its errors are one line."""
    calls = []
    real_run = job_estimate.subprocess.run
    monkeypatch.setattr(job_estimate.subprocess, "run", lambda argv, **kw: calls.append(argv) or real_run(argv, **kw))
    est = job_estimate.measure(TrainConfig(model="lenet5", dataset="digits", batch_size=64, precision="fp32"))
    assert est["seconds_per_epoch"] > 0 and est["measured_batch"] == 64
    assert calls and calls[0][1:4] == ["-m", "cnn_core", "estimate"]
    with pytest.raises(CnnError, match="unknown dataset 'nosuch'"):
        job_estimate.measure(TrainConfig(model="lenet5", dataset="nosuch"))
