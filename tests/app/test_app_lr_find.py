"""The Train page's learning-rate finder (AppTest): the button queues an lr-find job, the curve shows with the
suggestion and how it was chosen, "Use this rate" fills the form; and the early-stopping option is in sight. The
job's process is a stand-in that writes a result file as the real CLI does (tests/jobs run the real one)."""

from __future__ import annotations

import json
import math
import sys

from app_util import chart_spec, charts, open_page, shown, texts
from test_app_train import managers  # noqa: F401  (the fixture: a private JobManager as the app's)

from cnn_core.jobs import manager as jobs
from cnn_core.training.lr_curve import WHY, Smoother, suggest

WRITE = ("import json, sys; a = sys.argv; out = a[a.index('--out') + 1]; d = json.load(open(out)); "
         "d.update(json.load(open(a[1]))); json.dump(d, open(out, 'w'))")  # the canned result into the job's file
FAIL = "import sys; print('error: dataset digits has a bad day', file=sys.stderr); sys.exit(2)"


def canned() -> dict:
    """A finder's result on a known curve: flat, a descent from 1e-3 to 0.1, then a blow-up."""
    lrs = [1e-7 * 1e8 ** (i / 99) for i in range(100)]
    losses = [2.3 + 0.02 * math.sin(7 * i) if lr < 1e-3 else 2.3 - 0.9 * math.log10(lr / 1e-3) if lr < 0.1
              else 0.5 * 30 ** math.log10(lr / 0.1) for i, lr in enumerate(lrs)]
    sm = Smoother(beta=0.7)
    smoothed = [sm.add(v) for v in losses]
    s = suggest(lrs, smoothed)
    return {"state": "finished", "model": "lenet5", "dataset": "digits", "optimizer": "sgd", "batch_size": 128,
            "lrs": lrs, "losses": losses, "smoothed": smoothed, "suggestion": s["valley"], "rule": "valley",
            "why": WHY["valley"], "valley": s["valley"], "steepest": s["steepest"], "falling": list(s["falling"]),
            "minimum": s["minimum"], "stopped": "the loss exploded at 2.1 (over 4x its lowest)", "seconds": 3.0,
            "notes": []}


def start_finder(at, manager: jobs.JobManager) -> jobs.Job:
    at.selectbox(key="tr_dataset").set_value("digits").run()
    at.selectbox(key="tr_model").set_value("lenet5").run()
    at.button(key="tr_lrfind").click().run()
    job = manager.get(at.session_state.tr_lrfind_job)
    assert job is not None and job.kind == "lr-find" and job.status()["config"]["model"] == "lenet5"
    manager.wait(job.id, timeout=60)
    at.run()
    return job


def test_find_shows_the_curve_and_use_this_rate_fills_the_form(managers, tmp_path):  # noqa: F811
    result = canned()
    (tmp_path / "result.json").write_text(json.dumps(result))
    manager = managers([sys.executable, "-c", WRITE, str(tmp_path / "result.json")])
    at = open_page("train")
    job = start_finder(at, manager)
    assert job.state == "finished", job.message
    lr = float(f"{result['suggestion']:.2g}")
    said = texts(at)
    assert f"Suggested learning rate **{lr:g}**, by the valley rule: halfway along" in said
    assert "the steepest rule would say" in said and "the loss exploded at 2.1" in said
    curve = [chart_spec(c) for c in charts(at) if "learning rate" in json.dumps(chart_spec(c))]
    assert len(curve) == 1
    layers = curve[0]["layer"]
    assert any(ly.get("encoding", {}).get("x", {}).get("scale", {}).get("type") == "log" for ly in layers)
    assert {m["mark"]["type"] if isinstance(m["mark"], dict) else m["mark"] for m in layers} >= {"line", "rule"}
    assert at.number_input(key="tr_lr").value != lr
    at.button(key="tr_lrfind_use").click().run()
    assert at.number_input(key="tr_lr").value == lr
    assert not at.warning  # found for the form's own settings
    at.selectbox(key="tr_optimizer").set_value("adam").run()
    assert any("Found for other settings" in shown(w) and "optimizer" in shown(w) for w in at.warning)


def test_a_failed_finder_is_one_line(managers):  # noqa: F811
    manager = managers([sys.executable, "-c", FAIL])
    at = open_page("train")
    job = start_finder(at, manager)
    assert job.state == "failed"
    errors = [shown(e) for e in at.error]
    assert "The learning-rate finder failed: dataset digits has a bad day" in errors


def test_early_stopping_is_in_sight_and_labelled(managers):  # noqa: F811
    managers([sys.executable, "-c", "pass"])
    at = open_page("train")
    box = at.number_input(key="tr_patience")
    assert box.label.startswith("Early stopping") and box.value == 0
    assert all("tr_patience" not in [w.key for w in e.number_input] for e in at.expander)  # not folded away
