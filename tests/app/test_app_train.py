"""The Train page (AppTest): options from the registry, a real tiny job started from the page and followed to
the end, the queue, cancel and resume (those with a stand-in process that never trains)."""

from __future__ import annotations

import io
import sys
import zipfile

import pytest
from app_util import chart_data, charts, jpeg, open_page, shown, texts
from hooks_util import Hooks
from PIL import Image

from cnn_core.config import TrainConfig
from cnn_core.core.files import read_json
from cnn_core.engine import distributed
from cnn_core.jobs import estimate as estimates
from cnn_core.jobs import manager as jobs
from cnn_core.models import build_model, count_parameters, get_spec, list_models, model_table
from cnn_core.runs.rundir import RunDir
from cnn_core.workflows.run import train_run

SLEEPER = [sys.executable, "-c", "import time; time.sleep(60)"]
TINY = {"model": "lenet5", "dataset": "digits", "epochs": 1, "batch_size": 64, "max_batches": 2,
        "precision": "fp32"}
TIMED = ("model", "dataset", "batch_size", "augment", "input_size", "train_subset", "max_batches", "precision",
         "device", "val_fraction", "seed", "optimizer")  # the options the Train page keys its timings by


@pytest.fixture
def managers(monkeypatch, runs):
    """Install a private JobManager as the app's process-wide one (``command`` replaces the CLI)."""
    made: list[jobs.JobManager] = []

    def make(command: list[str] | None = None) -> jobs.JobManager:
        m = jobs.JobManager(command=command)
        monkeypatch.setattr(jobs, "_MANAGER", m)
        made.append(m)
        return m

    yield make
    for m in made:
        m.shutdown(wait=30)


def set_options(at, **values) -> None:
    """One widget at a time, in order, as a person would (choosing a model resets its options)."""
    for key, value in values.items():
        widget = next(w for kind in ("selectbox", "number_input", "text_input", "checkbox")
                      for w in at.get(kind) if w.key == f"tr_{key}")
        widget.set_value(value).run()


def test_options_come_from_the_registry_and_follow_the_model(runs, managers):
    managers(SLEEPER)
    at = open_page("train")
    model = at.selectbox(key="tr_model")
    assert model.options == [f"{n} — {get_spec(n).description}" for n in list_models()]
    assert model.value == min(model_table(), key=lambda r: r["params"])["model"]  # the quickest to train
    for other in list_models():
        want = TrainConfig(**get_spec(other).defaults)
        model.set_value(other).run()
        assert at.number_input(key="tr_lr").value == want.lr and at.number_input(key="tr_epochs").value == want.epochs
        assert at.selectbox(key="tr_optimizer").value == want.optimizer
        assert at.number_input(key="tr_batch_size").value == want.batch_size


def test_parameter_count_and_time_estimate_for_the_chosen_dataset(runs, managers):
    managers(SLEEPER)
    at = open_page("train")
    set_options(at, dataset="digits", model="simple_cnn", max_batches=5)
    metrics = {m.label: m.value for m in at.metric}
    assert metrics["Parameters"] == f"{count_parameters(build_model('simple_cnn', 10, 1, 32)):,}"
    assert metrics["Batches per epoch"] == "5"
    at.button(key="tr_measure").click().run()
    per_epoch = {m.label: m.value for m in at.metric}["Time per epoch"]
    assert per_epoch.endswith(" s") or "min" in per_epoch
    assert "timed from a few real training steps" in texts(at) and "to start" in texts(at)
    assert "may come out faster" not in texts(at)  # nothing else trained meanwhile: no caveat


def test_a_tiny_run_started_from_the_page_is_followed_to_the_end(runs, managers):
    manager = managers()  # the real CLI
    at = open_page("train")
    set_options(at, dataset="digits", model="lenet5", epochs=2, batch_size=64, max_batches=2, precision="fp32",
                name="from-page")
    at.button(key="tr_start").click().run()
    job = manager.get(at.session_state.tr_job)
    assert job is not None and job.run == "from-page" and job.epochs == 2
    assert "Running" in texts(at) and "from-page" in texts(at) and at.get("progress")
    manager.wait(job.id, timeout=300)
    cfg = TrainConfig.from_dict(read_json(runs / "from-page" / "config.json"))
    assert (cfg.model, cfg.dataset, cfg.epochs, cfg.max_batches) == ("lenet5", "digits", 2, 2)
    at.run()
    assert job.state == "finished"
    assert "Test accuracy" in shown(at.success[0])
    curves = [chart_data(c) for c in charts(at) if "epoch" in chart_data(c)]
    assert curves and sorted(set(curves[0]["epoch"])) == [1, 2]
    insight = RunDir(runs / "from-page").insight()  # the training callback's look inside, shown in the panel
    assert insight["epoch"] == 2 and set(insight["files"]) == {"image", "heatmap", "filters"}
    inside = at.get("image")[-1]
    assert inside.captions == ["the image", f"heatmap of {insight['predicted']}", "first-layer filters"]
    assert len(inside.value) == 3 and "Inside the model after epoch 2" in texts(at)
    assert f"it says **{insight['predicted']}**" in texts(at)

    reopened = open_page("train")  # a new session (reload, another student): the job is still shown
    assert "from-page" in texts(reopened) and "Test accuracy" in reopened.success[0].value


def test_a_second_request_waits_in_the_queue_and_can_be_cancelled(runs, managers):
    manager = managers(SLEEPER)
    other = manager.submit(TrainConfig(**TINY), name="someone-else", root=runs)
    at = open_page("train")
    assert "someone-else" in texts(at)  # a new visitor sees the running job
    set_options(at, dataset="digits", name="mine")
    assert at.button(key="tr_start").proto.label == "Queue training"
    at.button(key="tr_start").click().run()
    mine = manager.get(at.session_state.tr_job)
    assert mine.state == "queued" and "number 1 in the queue" in texts(at) and "someone-else" in texts(at)
    at.button(key=f"tr_cancel_{mine.id}").click().run()
    assert mine.state == "cancelled" and not manager.queued()
    again = manager.submit(TrainConfig(**TINY), name="again", root=runs)
    at.run()
    at.button(key=f"tr_dequeue_{again.id}").click().run()  # the queue list in "Jobs on this server"
    assert again.state == "cancelled" and not manager.queued()
    at.session_state.tr_job = other.id
    at.run()
    at.button(key=f"tr_cancel_{other.id}").click().run()
    manager.wait(other.id, timeout=30)
    assert other.state == "cancelled"


def test_bad_options_are_explained_and_start_nothing(runs, managers):
    manager = managers(SLEEPER)
    at = open_page("train")
    set_options(at, dataset="digits", name="no spaces please")
    at.button(key="tr_start").click().run()
    assert any("is not allowed" in shown(e) for e in at.error) and not manager.jobs()
    set_options(at, dataset="folder:…")
    assert any("enter the folder" in shown(e) for e in at.error)
    assert not [b for b in at.button if b.key == "tr_start"]


def test_a_stopped_run_can_be_resumed_from_the_page(runs, managers):
    manager = managers(SLEEPER)
    done = {"epoch": 0}
    train_run(TrainConfig(**{**TINY, "epochs": 3}), name="stopped", root=runs,
        callbacks=[Hooks(epoch=lambda row: done.update(epoch=row["epoch"]), stop=lambda: done["epoch"] >= 1)])
    at = open_page("train")
    assert at.selectbox(key="tr_resume_run").value == "stopped"
    at.button(key="tr_resume").click().run()
    job = manager.get(at.session_state.tr_job)
    assert job.resume and job.args == ["train", "--resume", "stopped"] and job.start_epoch == 2
    assert "resuming **stopped**" in texts(at)


def test_a_finished_run_trains_more_epochs_from_the_page(runs, managers):
    manager = managers()
    train_run(TrainConfig(**TINY), name="done", root=runs)
    at = open_page("train")
    assert at.selectbox(key="tr_more_run").value == "done"
    at.number_input(key="tr_more_epochs").set_value(2).run()
    assert at.button(key="tr_more").label == "Train 2 more epochs"
    at.button(key="tr_more").click().run()
    job = manager.get(at.session_state.tr_job)
    assert job.extending and job.args == ["train", "--resume", "done", "--epochs", "3"] and job.start_epoch == 2
    assert "training **done** further, to 3 epochs" in texts(at)
    manager.wait(job.id, timeout=300)
    assert job.state == "finished", job.message
    run = RunDir(runs / "done")
    assert [r["epoch"] for r in run.metrics()] == [1, 2, 3] and run.config()["epochs"] == 3
    assert run.status()["state"] == "finished" and run.status()["epochs_run"] == 3


def test_a_visitor_trains_further_only_the_runs_their_jobs_trained(runs, managers):
    manager = managers(SLEEPER)
    train_run(TrainConfig(**TINY), name="theirs", root=runs)
    at = open_page("train", operator=False)
    assert not [s for s in at.get("selectbox") if s.key == "tr_more_run"]
    assert "by the visitor whose job trained them" in texts(at)
    train_run(TrainConfig(**TINY), name="mine", root=runs)
    RunDir(runs / "mine").update_status(owner=at.session_state["_ui_visitor"])  # as manager.submit records it
    at.run()
    picker = at.selectbox(key="tr_more_run")
    assert picker.value == "mine" and len(picker.options) == 1
    added = TrainConfig(**{**TINY, "epochs": 5})  # a visitor's request is timed first: here, as if it had been
    at.session_state.tr_timing = {str({k: v for k, v in added.to_dict().items() if k in TIMED}): {
        "epoch": 1.0, "startup": 5.0, "loaded": False}}
    at.button(key="tr_more").click().run()
    job = manager.get(at.session_state.tr_job)
    assert job.extending and job.owner == at.session_state["_ui_visitor"] and job.epochs == 6


def test_a_visitor_resumes_only_their_own_stopped_runs_timed_for_the_epochs_left(runs, managers, monkeypatch):
    manager = managers(SLEEPER)
    for name in ("theirs", "mine"):  # each stopped after its first of 3 epochs
        done = {"epoch": 0}
        hooks = Hooks(epoch=lambda row, done=done: done.update(epoch=row["epoch"]),
                      stop=lambda done=done: done["epoch"] >= 1)
        train_run(TrainConfig(**{**TINY, "epochs": 3}), name=name, root=runs, callbacks=[hooks])
    at = open_page("train", operator=False)
    assert not [s for s in at.get("selectbox") if s.key == "tr_resume_run"]
    assert "Stopped runs can be resumed by the operator, or by the visitor whose job trained them" in texts(at)
    RunDir(runs / "mine").update_status(owner=at.session_state["_ui_visitor"])  # as manager.submit records it
    timed, per_epoch = [], {"seconds": 1000.0}
    monkeypatch.setattr(estimates, "measure", lambda cfg, timeout=0: timed.append(cfg) or {
        "seconds_per_epoch": per_epoch["seconds"], "startup_seconds": 5.0})
    at.run()
    picker = at.selectbox(key="tr_resume_run")
    assert picker.value == "mine" and len(picker.options) == 1
    at.button(key="tr_resume").click().run()
    assert [(c.dataset, c.epochs) for c in timed] == [("digits", 2)]  # the two epochs it has still to train
    assert "this job is estimated at 33 minutes; at most 30 minutes per job here" in texts(at) and not manager.jobs()
    per_epoch["seconds"], at.session_state.tr_timing = 10.0, {}
    at.button(key="tr_resume").click().run()
    job = manager.get(at.session_state.tr_job)
    assert job.resume and job.run == "mine" and job.owner == at.session_state["_ui_visitor"] and job.start_epoch == 2


# ------------------------------------------------------------------------------------ a zip of your own photos

def png(color: tuple[int, int, int]) -> bytes:
    buf = io.BytesIO()
    Image.new("RGB", (40, 30), color).save(buf, "PNG")
    return buf.getvalue()


def photo_zip(entries: dict[str, bytes]) -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as zf:
        for name, data in entries.items():
            zf.writestr(name, data)
    return buf.getvalue()


# red and green with 8 photos each (PNG and JPEG), blue with only 3: enough to split, few enough to warn about
PHOTOS = photo_zip({**{f"my photos/red/{i}.png": png((200 + i, 20, 20)) for i in range(8)},
                    **{f"my photos/green/{i}.jpg": jpeg((50, 40), (20, 200 + i, 20)) for i in range(8)},
                    **{f"my photos/blue/{i}.png": png((20, 20, 200 + i)) for i in range(3)}})


@pytest.fixture
def data_root(tmp_path, monkeypatch):
    """A private, empty data dir and state folder: uploads are unpacked in the state folder, never the data dir."""
    root = tmp_path / "data"
    root.mkdir()
    monkeypatch.setenv("CNN_DATA_DIR", str(root))
    monkeypatch.setenv("CNN_STATE_DIR", str(tmp_path / "state"))
    return root


def upload(at, data: bytes, name: str = "photos.zip") -> None:
    at.selectbox(key="tr_dataset").set_value("zip:…").run()
    at.file_uploader(key="tr_zip").set_value((name, data, "application/zip")).run()


def test_an_uploaded_zip_of_class_folders_is_unpacked_counted_and_trained_on(runs, managers, data_root):
    manager = managers()  # the real CLI
    at = open_page("train")
    upload(at, PHOTOS, "../../etc/passwd.zip")  # the upload's name is never a path
    assert not at.error, [shown(e) for e in at.error]
    unpacked = list((data_root.parent / "state" / "uploads").iterdir())
    assert len(unpacked) == 1 and unpacked[0].name.startswith("photos-") and not list(data_root.iterdir())
    counts = next(d.value for d in at.dataframe if "class" in d.value.columns).set_index("class")
    assert counts.loc["red"].to_dict() == {"train": 6, "val": 1, "test": 1}
    assert counts.loc["blue"].to_dict() == {"train": 1, "val": 1, "test": 1}
    assert counts.loc["green"].sum() == 8
    assert any("fewer than 5 images: blue (3)" in shown(w) for w in at.warning)

    again = open_page("train")  # the same zip again (another session): found, not unpacked a second time
    upload(again, PHOTOS, "copy.zip")
    assert list((data_root.parent / "state" / "uploads").iterdir()) == unpacked and not again.error

    set_options(at, model="lenet5", epochs=1, batch_size=8, max_batches=2, precision="fp32", name="my-photos")
    at.button(key="tr_start").click().run()
    job = manager.wait(at.session_state.tr_job, timeout=300)
    assert job.state == "finished", job.message
    cfg = TrainConfig.from_dict(read_json(runs / "my-photos" / "config.json"))
    assert cfg.dataset == f"folder:{unpacked[0].resolve()}"
    split = read_json(runs / "my-photos" / "split.json")
    assert split["classes"] == ["blue", "green", "red"] and split["counts"]["train"]["red"] == 6
    at.run()
    assert "Test accuracy" in shown(at.success[0])


@pytest.mark.parametrize("entries, message", [
    ({"../evil/1.png": png((0, 0, 0)), "cats/1.png": png((1, 1, 1)), "dogs/1.png": png((2, 2, 2))},
     "zip refused: it contains a path leaving the folder (../evil/1.png)"),
    ({f"cats/{i}.png": png((i, i, i)) for i in range(6)}, "the zip has only one class folder ('cats')"),
])
def test_a_hostile_or_single_class_zip_is_refused_in_one_line_and_writes_nothing(runs, managers, data_root,
                                                                                 entries, message):
    managers(SLEEPER)
    at = open_page("train")
    upload(at, photo_zip(entries))
    assert [shown(e) for e in at.error] == [shown(at.error[0])] and message in shown(at.error[0])  # one message
    assert "\n" not in shown(at.error[0])
    assert not list(data_root.iterdir()) and not (data_root.parent / "state").exists()  # not even an empty folder
    assert not [b for b in at.button if b.key == "tr_start"]


def test_an_upload_a_job_trains_on_is_not_expired_to_make_room_for_another(runs, managers, data_root, monkeypatch):
    from pages import ui

    manager = managers(SLEEPER)
    cap = {"bytes": 10 ** 9}
    real = ui.import_zip
    monkeypatch.setattr(ui, "import_zip", lambda data, **kw: real(data, max_total=cap["bytes"], **kw))
    at = open_page("train")
    upload(at, PHOTOS)
    [first] = list((data_root.parent / "state" / "uploads").iterdir())
    job = manager.submit(TrainConfig(**{**TINY, "dataset": f"folder:{first.resolve()}"}), name="on-it", root=runs)
    cap["bytes"] = sum(f.stat().st_size for f in first.rglob("*") if f.is_file()) + 10  # room for one upload
    other = photo_zip({f"p/{c}/{i}.png": png((i, k * 90, 9)) for k, c in enumerate(["x", "y"]) for i in range(4)})
    upload(at, other, "other.zip")
    assert "the other uploads are being trained on or unpacked" in shown(at.error[0]) and first.is_dir()
    manager.cancel(job.id)  # no job on it any more: it may expire now
    at.run()
    assert not at.error and not first.exists()


def test_an_upload_is_refused_in_one_line_when_the_disk_is_nearly_full(runs, managers, data_root):
    from cnn_core.jobs.limits import GB, free_bytes, save_limits

    managers(SLEEPER)
    save_limits({"min_free_gb": free_bytes(data_root) / GB + 1000})  # a floor above what this disk has free
    at = open_page("train")
    upload(at, PHOTOS)
    assert len(at.error) == 1 and "GB for the unpacked zip): delete old runs first" in shown(at.error[0])
    assert not (data_root.parent / "state" / "uploads").exists()


# ------------------------------------------------------------------------------------------------- all GPUs

def test_all_gpus_is_offered_only_with_more_than_one_and_launches_torchrun(runs, managers, monkeypatch):
    manager = managers()
    for names in ([], ["GPU 0"]):  # this CPU machine, then one GPU: nothing to choose
        monkeypatch.setattr(distributed, "visible_gpus", lambda names=names: names)
        assert not [c for c in open_page("train").checkbox if c.key == "tr_all_gpus"]

    monkeypatch.setattr(distributed, "visible_gpus", lambda: ["GPU 0", "GPU 1"])
    at = open_page("train")
    set_options(at, dataset="digits", model="lenet5", epochs=1, batch_size=64, max_batches=2, precision="fp32",
                name="both")
    at.checkbox(key="tr_all_gpus").check().run()
    assert "all 2 GPUs" in at.checkbox(key="tr_all_gpus").label
    at.button(key="tr_start").click().run()
    job = manager.get(at.session_state.tr_job)
    assert job.argv[:5] == [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2"]
    assert job.argv[5:] == ["-m", "cnn_core", "train", "--prepared", "both", "--quiet"]  # the single process's flags
    cfg = TrainConfig.from_dict(RunDir(runs / "both").config())  # what every process trains: the run's config
    assert (cfg.model, cfg.dataset, cfg.epochs, cfg.batch_size, cfg.max_batches) == ("lenet5", "digits", 1, 64, 2)
    at.run()
    at.button(key=f"tr_cancel_{job.id}").click().run()  # the same cancel as a single process
    manager.wait(job.id, timeout=120)
    assert job.state == "cancelled"
