"""Twenty browser sessions predict at once while a training job runs in the same server: all get the right
answer in bounded time and the job carries on unharmed. scripts/loadtest.py does the work (its own server, one
Chromium, a job started from the Train page); this test runs it as a person would and checks its report and the
job's run folder. The latency distribution is kept in test-artifacts/loadtest.json."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from cnn_core.evaluation.predictor import Predictor
from cnn_core.runs.rundir import RunDir
from scripts.appdriver import ARTIFACTS, ROOT

pytestmark = [pytest.mark.e2e, pytest.mark.slow]
SESSIONS = 20
ANSWER_WITHIN = 60.0  # seconds from a session's upload to its answer, on 2 busy cores


def test_twenty_sessions_predict_while_a_job_trains(tmp_path):
    root, report_path = tmp_path / "checkpoints", ARTIFACTS / "loadtest.json"
    report_path.unlink(missing_ok=True)
    done = subprocess.run([sys.executable, "scripts/loadtest.py", "--sessions", str(SESSIONS), "--root", str(root),
                           "--json", str(report_path), "--timeout", "240"],
                          cwd=ROOT, capture_output=True, text=True, timeout=330)
    print(done.stdout, done.stderr)
    report = json.loads(report_path.read_text())
    rows = report["per_session"]
    assert len(rows) == SESSIONS
    assert [r["error"] for r in rows] == [None] * SESSIONS
    assert [r["label"] for r in rows] == [r["expected"] for r in rows]  # each its own digit, not a neighbour's
    assert {r["expected"] for r in rows} == {"0", "1", "4", "7"}
    assert all(r["probability"] >= 0.99 for r in rows)
    assert all(0 < r["latency_s"] <= ANSWER_WITHIN for r in rows), report["latency_s"]
    assert report["latency_s"]["p50"] <= report["latency_s"]["p90"] <= report["latency_s"]["max"]

    before, after = report["job_at_first_upload"], report["job_after_last_answer"]
    assert before["state"] == "running"  # the load really ran while the job trained
    moved = (after["epoch"], after["batch"]) > (before["epoch"], before["batch"])
    assert after["state"] == "finished" or (after["state"] == "running" and moved), (before, after)
    run_dir = root / "loadtest-train"
    assert RunDir(run_dir).info().state in ("cancelled", "finished")
    for which in ("best", "last"):
        assert Predictor.from_run(run_dir, which=which).classes == [str(i) for i in range(10)]
    assert RunDir(run_dir).metrics(), "no finished epoch in the job's metrics.csv"
    assert done.returncode == 0, done.stderr
