"""--tensorboard: event files in the run folder holding exactly metrics.csv's numbers; no flag, no import."""

import os
import subprocess
import sys
from pathlib import Path

import pytest
from hooks_util import Hooks

from cnn_core.config import TrainConfig
from cnn_core.core.errors import CnnError
from cnn_core.runs.rundir import RunDir
from cnn_core.training.tblog import TAGS, TensorBoard, read_scalars
from cnn_core.workflows.run import train_run

ROOT = Path(__file__).resolve().parents[2]
TINY = TrainConfig(model="lenet5", dataset="digits", epochs=2, batch_size=64, lr=0.05, train_subset=200, seed=0)


def test_scalars_match_metrics_csv_and_resume_continues_them(runs):
    stop = {"now": False}
    part = train_run(TINY.replace(epochs=3), name="tb", callbacks=[
        TensorBoard(), Hooks(epoch=lambda row: stop.update(now=row["epoch"] == 2), stop=lambda: stop["now"])])
    assert part["state"] == "cancelled"
    train_run(TrainConfig(), resume="tb", callbacks=[TensorBoard()])
    assert len(list((runs / "tb").glob("events.out.tfevents.*"))) == 2  # one per process, both under the run
    scalars = read_scalars(runs / "tb")
    rows = RunDir(runs / "tb").metrics()
    assert set(scalars) == set(TAGS.values())
    for column, tag in TAGS.items():
        assert [step for step, _ in scalars[tag]] == [1, 2, 3]
        assert [v for _, v in scalars[tag]] == pytest.approx([r[column] for r in rows], rel=1e-6), tag


def test_missing_tensorboard_is_one_clear_error_before_any_folder(runs, monkeypatch):
    for mod in ("tensorboard", "torch.utils.tensorboard"):
        monkeypatch.setitem(sys.modules, mod, None)  # importing it now raises ImportError
    with pytest.raises(CnnError, match="pip install tensorboard"):
        train_run(TINY, name="no-tb", callbacks=[TensorBoard()])
    assert not (runs / "no-tb").exists()


def test_training_without_the_flag_never_imports_tensorboard(tmp_path):
    code = ("import sys; from cnn_core.cli.main import main; "
            "rc = main(['train', '--model', 'lenet5', '--dataset', 'digits', '--epochs', '1', '--max-batches', '2', "
            "'--name', 'plain', '--quiet']); "
            "assert rc == 0, rc; bad = [m for m in sys.modules if 'tensorboard' in m]; assert not bad, bad")
    env = {**os.environ, "CNN_CHECKPOINTS": str(tmp_path)}
    p = subprocess.run([sys.executable, "-c", code], cwd=ROOT, env=env, capture_output=True, text=True, timeout=600)
    assert p.returncode == 0, p.stderr[-2000:]
    assert (tmp_path / "plain" / "best.pt").is_file() and not list((tmp_path / "plain").glob("events.*"))
