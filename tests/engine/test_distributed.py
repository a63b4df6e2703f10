"""Data-parallel training: the shard arithmetic, and real 2-process ``torchrun`` jobs (gloo, CPU) on digits."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from hooks_util import Hooks
from torch import nn

from cnn_core.cli.main import build_parser
from cnn_core.config import TrainConfig
from cnn_core.config.argv import config_args, explicit_options
from cnn_core.core.errors import CnnError
from cnn_core.core.files import read_json
from cnn_core.engine import distributed
from cnn_core.engine.batches import Batches, Normalize
from cnn_core.models import make_config
from cnn_core.runs.checkpoint import load_checkpoint, model_from_checkpoint
from cnn_core.runs.rundir import RunDir
from cnn_core.training.loop import _checked_new
from cnn_core.workflows.run import train_run

ROOT = Path(__file__).resolve().parents[2]
# 512 training images (a multiple of 2 and of the batch): a 2-process step then sees exactly the images and the
# mean gradient of a 1-process step. fp32, SGD, no dropout, no augmentation, no BN: nothing else differs.
CFG = TrainConfig(model="lenet5", dataset="digits", epochs=12, batch_size=64, optimizer="sgd", lr=0.02,
                  schedule="cosine", precision="fp32", augment=False, train_subset=512, seed=3)




@pytest.fixture(scope="module", autouse=True)
def one_thread():
    """One thread per process, in the tests and in the jobs: two cores, shared, and 2-thread runs crawl."""
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("CNN_THREADS", "1")
        yield


# ---------------------------------------------------------------------------------------- shard arithmetic

@pytest.mark.parametrize("n, world", [(512, 2), (101, 2), (100, 3), (7, 4)])
def test_shards_are_disjoint_and_drop_fewer_than_world_images(n, world):
    for epoch in (1, 2):
        shards = [distributed.shard_indices(n, r, world, seed=0, epoch=epoch) for r in range(world)]
        flat = torch.cat(shards).tolist()
        assert len(flat) == len(set(flat)) == n - n % world  # no duplicates; the cut is n mod world
        assert {len(s) for s in shards} == {n // world}  # equal shards: every rank takes the same steps
    e1 = torch.cat([distributed.shard_indices(n, r, world, 0, 1) for r in range(world)])
    e2 = torch.cat([distributed.shard_indices(n, r, world, 0, 2) for r in range(world)])
    assert not torch.equal(e1, e2)  # reshuffled every epoch


def test_step_k_of_all_ranks_is_step_k_of_one_process():
    x, y = torch.zeros(96, 1, 4, 4, dtype=torch.uint8), torch.arange(96)
    single = Batches(x, y, 32, Normalize((0.5,), (0.5,), 4), shuffle=True, seed=5)
    single.set_epoch(3)
    one = [set(yb.tolist()) for _, yb in single]
    ranks = []
    for r in range(2):
        b = Batches(x, y, 32, Normalize((0.5,), (0.5,), 4), shuffle=True, seed=5)
        distributed.Dist(rank=r, world=2).shard_train(b)
        b.set_epoch(3)
        distributed.Dist(rank=r, world=2).start_epoch(b, 3)
        ranks.append([set(yb.tolist()) for _, yb in b])
    assert len(ranks[0]) == len(ranks[1]) == len(one) == 3
    assert all(ranks[0][k] | ranks[1][k] == one[k] and not ranks[0][k] & ranks[1][k] for k in range(3))


def test_eval_split_is_covered_without_cutting():
    parts = torch.cat([distributed.eval_indices(11, r, 3) for r in range(3)])
    assert sorted(parts.tolist()) == list(range(11))


def test_global_batch_must_split_evenly():
    assert distributed.per_rank_batch(128, 4) == 32
    with pytest.raises(CnnError, match="batch size 100 is the global batch .* 3 processes"):
        distributed.per_rank_batch(100, 3)


def test_indivisible_batch_fails_before_a_run_folder_is_made(runs, monkeypatch):
    monkeypatch.setenv("WORLD_SIZE", "3")
    with pytest.raises(CnnError, match="split evenly over 3 processes"):
        _checked_new(CFG)
    assert not (runs / "odd").exists()


def test_sync_batchnorm_only_where_pytorch_has_it():
    def bn_model() -> nn.Module:
        return nn.Sequential(nn.Conv2d(1, 4, 3), nn.BatchNorm2d(4), nn.ReLU())

    two = distributed.Dist(rank=0, world=2)
    gpu = two.sync_batchnorm(bn_model(), torch.device("cuda", 0))  # conversion itself needs no GPU
    assert isinstance(gpu[1], nn.SyncBatchNorm)
    assert gpu.state_dict().keys() == bn_model().state_dict().keys()  # checkpoints stay loadable anywhere
    assert isinstance(two.sync_batchnorm(bn_model(), torch.device("cpu"))[1], nn.BatchNorm2d)  # no CPU SyncBN
    assert isinstance(distributed.Dist().sync_batchnorm(bn_model(), torch.device("cuda", 0))[1], nn.BatchNorm2d)


def test_launch_command_runs_torchrun_on_the_same_cli():
    cfg = CFG.replace(preset="", lr=0.0125, augment=True)
    argv = distributed.launch_command(config_args(cfg), 4, ["--checkpoints", "/runs"])
    assert argv[:5] == [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=4"]
    assert argv[5:10] == ["-m", "cnn_core", "--checkpoints", "/runs", "train"]
    args = build_parser().parse_args(argv[7:])
    assert make_config(**explicit_options(args)) == cfg  # the flags rebuild the very same config
    with pytest.raises(CnnError, match="at least 1|>= 1"):
        distributed.launch_command([], 0)
    with pytest.raises(CnnError, match="no command-line flags"):
        config_args(CFG.replace(extra={"width": 2}))
    assert isinstance(distributed.visible_gpus(), list)


# --------------------------------------------------------------------------------------- real torchrun jobs

def _torchrun(root: Path, *train_args: str, record: Path | None = None) -> subprocess.Popen:
    env = {**os.environ, "CNN_CHECKPOINTS": str(root), "PYTHONPATH": str(ROOT)}
    env.pop("CNN_DDP_RECORD", None)
    if record is not None:
        record.mkdir(exist_ok=True)
        env["CNN_DDP_RECORD"] = str(record)
    argv = distributed.launch_command(list(train_args), 2)
    return subprocess.Popen(argv, cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def _finish(p: subprocess.Popen, timeout: float = 300) -> tuple[int, str, str]:
    out, err = p.communicate(timeout=timeout)
    return p.returncode, out, err


def _wait_for_epochs(run_dir: Path, n: int, p: subprocess.Popen, timeout: float = 240) -> None:
    end = time.monotonic() + timeout
    while len(RunDir(run_dir).metrics()) < n:
        assert p.poll() is None, "the job ended early: " + p.communicate()[1][-2000:]
        assert time.monotonic() < end, f"no {n} epochs in {timeout}s"
        time.sleep(0.2)


def _assert_same_weights(a: Path, b: Path, atol: float = 1e-5) -> None:
    wa, wb = load_checkpoint(a)["state_dict"], load_checkpoint(b)["state_dict"]
    assert wa.keys() == wb.keys()
    for k in wa:
        assert torch.allclose(wa[k].float(), wb[k].float(), atol=atol), (k, (wa[k] - wb[k]).abs().max())


@pytest.fixture(scope="module")
def single(tmp_path_factory) -> Path:
    """The reference: the same config trained in one process."""
    root = tmp_path_factory.mktemp("single")
    return Path(train_run(CFG, name="single", root=root)["run_dir"])


@pytest.fixture(scope="module")
def two_process(tmp_path_factory) -> tuple[Path, Path, str]:
    """One real ``torchrun --nproc_per_node=2`` job: (checkpoints root, record folder, stdout)."""
    root = tmp_path_factory.mktemp("ddp")
    record = root.parent / (root.name + "-record")
    rc, out, err = _finish(_torchrun(root, *config_args(CFG), "--name", "ddp", record=record))
    assert rc == 0, err[-3000:]
    return root, record, out


@pytest.mark.slow
def test_two_ranks_read_disjoint_shards_covering_the_data_each_epoch(two_process):
    _, record, _ = two_process
    lines = [[json.loads(s) for s in (record / f"rank{r}.jsonl").read_text().splitlines()] for r in (0, 1)]
    assert [len(x) for x in lines] == [CFG.epochs, CFG.epochs]
    assert lines[0][0]["pid"] != lines[1][0]["pid"] and lines[1][0]["world"] == 2
    assert {x["batch_size"] for x in lines[0] + lines[1]} == {CFG.batch_size // 2}  # the global batch, split
    for a, b in zip(*lines, strict=True):
        assert a["epoch"] == b["epoch"]
        assert not set(a["indices"]) & set(b["indices"])
        assert sorted(a["indices"] + b["indices"]) == list(range(512))
    assert lines[0][0]["indices"] != lines[0][1]["indices"]  # reshuffled per epoch


@pytest.mark.slow
def test_two_processes_train_the_same_weights_as_one(two_process, single):
    root, _, out = two_process
    _assert_same_weights(root / "ddp" / "last.pt", single / "last.pt")
    _assert_same_weights(root / "ddp" / "best.pt", single / "best.pt")
    ddp_rows, one_rows = RunDir(root / "ddp").metrics(), RunDir(single).metrics()
    for a, b in zip(ddp_rows, one_rows, strict=True):  # reduced over ranks: the whole-split numbers
        for k in ("train_loss", "train_accuracy", "val_loss", "val_accuracy", "lr"):
            assert a[k] == pytest.approx(b[k], abs=2e-4), (a["epoch"], k)
    status, ref = read_json(root / "ddp" / "status.json"), read_json(single / "status.json")
    assert status["state"] == "finished" and status["test_accuracy"] == pytest.approx(ref["test_accuracy"])
    assert "data-parallel over 2 processes: 32 images each per step (global batch 64)" in out


@pytest.mark.slow
def test_only_rank_zero_writes_files_and_prints(two_process):
    root, _, out = two_process
    assert [p.name for p in root.iterdir()] == ["ddp"]  # one run folder, named by rank 0 for both
    files = sorted(p.name for p in (root / "ddp").iterdir())
    saved = ["best.pt", "config.json", "last.pt", "metrics.csv", "model_card.md", "status.json", RunDir.INSIGHT,
             *RunDir.INSIGHT_IMAGES.values(), *RunDir.REPORTS.values()]
    assert files == sorted(saved)  # the run's files once each, and no temporary file
    assert [r["epoch"] for r in RunDir(root / "ddp").metrics()] == list(range(1, CFG.epochs + 1))
    assert out.count("epoch 1/12 ") == 1 and out.count("best val acc") == 1
    assert TrainConfig.from_dict(read_json(root / "ddp" / "config.json")) == CFG
    assert model_from_checkpoint(load_checkpoint(root / "ddp" / "best.pt"))  # plain single-process model


@pytest.mark.slow
def test_single_process_run_resumes_with_two_processes(runs, single):
    stop = {"now": False}

    def after_three(row: dict) -> None:
        stop["now"] = row["epoch"] == 3

    part = train_run(CFG, name="part", callbacks=[Hooks(epoch=after_three, stop=lambda: stop["now"])])
    assert part["state"] == "cancelled" and load_checkpoint(runs / "part" / "last.pt")["epoch"] == 3
    rc, out, err = _finish(_torchrun(runs, "--resume", "part"))
    assert rc == 0, err[-3000:]
    assert "resuming part at epoch 4" in out
    assert [r["epoch"] for r in RunDir(runs / "part").metrics()] == list(range(1, CFG.epochs + 1))
    _assert_same_weights(runs / "part" / "last.pt", single / "last.pt")


@pytest.mark.slow
def test_stopped_two_process_run_resumes_in_one_process(runs, single):
    p = _torchrun(runs, *config_args(CFG), "--name", "stopped")
    _wait_for_epochs(runs / "stopped", 2, p)
    p.send_signal(signal.SIGTERM)  # what Ctrl-C / the app's stop button does: torchrun passes it on to both
    _finish(p)
    status = read_json(runs / "stopped" / "status.json")
    assert status["state"] == "cancelled", status
    done = load_checkpoint(runs / "stopped" / "last.pt")["epoch"]
    assert 2 <= done < CFG.epochs
    resumed = train_run(TrainConfig(), resume="stopped")
    assert resumed["epochs_run"] == CFG.epochs
    _assert_same_weights(runs / "stopped" / "last.pt", single / "last.pt")


@pytest.mark.slow
def test_a_failed_rank_ends_the_job_and_keeps_finished_checkpoints(runs, tmp_path):
    record = tmp_path / "record"
    p = _torchrun(runs, *config_args(CFG), "--name", "crash", record=record)
    _wait_for_epochs(runs / "crash", 2, p)
    rank1 = json.loads((record / "rank1.jsonl").read_text().splitlines()[-1])["pid"]
    os.kill(rank1, signal.SIGKILL)  # a worker dies without a word (out of memory, a lost machine)
    rc, _, err = _finish(p)
    assert rc != 0
    status = read_json(runs / "crash" / "status.json")
    assert status["state"] == "failed" and "lost contact with another process" in status["message"], status
    assert "error: process 0 of 2 lost contact" in err and "rank      : 1" in err  # ours, then torchrun's
    last = load_checkpoint(runs / "crash" / "last.pt")
    assert 2 <= last["epoch"] < CFG.epochs and len(RunDir(runs / "crash").metrics()) >= 2
    assert model_from_checkpoint(last)  # still a valid checkpoint to resume from
