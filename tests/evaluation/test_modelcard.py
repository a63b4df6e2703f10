"""model_card.md: written by every finished run, with numbers that agree with the run's own files."""

import json
import re
import shlex

import pytest

from cnn_core.cli.main import build_parser
from cnn_core.config import TrainConfig
from cnn_core.config.argv import explicit_options
from cnn_core.core.errors import CnnError
from cnn_core.core.files import read_json, write_json
from cnn_core.evaluation.modelcard import read_model_card, reproduce_command, write_model_card
from cnn_core.evaluation.reports import evaluate_run
from cnn_core.models import build_model, count_parameters, make_config


def _parse_command(cmd: str) -> TrainConfig:
    words = shlex.split(cmd)
    assert words[:4] == ["python", "-m", "cnn_core", "train"]
    return make_config(**explicit_options(build_parser().parse_args(words[3:])))


def test_card_reports_the_runs_facts(digits_run):
    card = read_model_card(digits_run)
    assert card is not None and card.startswith("# Model card: digits-lenet\n")
    status = read_json(digits_run / "status.json")
    cfg = TrainConfig.from_dict(read_json(digits_run / "config.json"))
    # split sizes: digits has 1797 images, 360 of them test; 10% of the rest is validation
    assert "| train | 1293 |" in card and "| validation | 144 |" in card and "| test | 360 |" in card
    params = count_parameters(build_model("lenet5", 10, 1, 32))
    assert f"Parameters: {params:,}." in card and status["params"] == params
    assert f"| seed | {cfg.seed} |" in card and f"| batch size | {cfg.batch_size} |" in card
    assert "torch 2." in card and f"| device | {status['device']} |" in card
    rep = evaluate_run(digits_run)
    assert f"| accuracy | {100 * status['best_val_accuracy']:.2f}% | {100 * rep['accuracy']:.2f}% |" in card
    assert f"at epoch {status['best_epoch']} of 12" in card
    per_class = re.findall(r"^\| (\d) \| ([\d.]+) \| ([\d.]+) \| ([\d.]+) \| (\d+) \|$", card, re.M)
    assert [(c, float(p), float(r), int(s)) for c, p, r, _f, s in per_class] == [
        (row["class"], round(row["precision"], 4), round(row["recall"], 4), row["support"]) for row in rep["per_class"]]
    assert len(re.findall(r"^\| \d+ \| \d\.\d{4} \| \d\.\d{4} \| \d\.\d{4} \| \d\.\d{4} \|", card, re.M)) == 12
    config_block = card.split("```json\n")[1].split("```")[0]
    assert json.loads(config_block) == cfg.to_dict()


def test_reproduce_command_rebuilds_the_exact_config(digits_run):
    card = read_model_card(digits_run)
    cmd = card.split("## Reproduce\n\n```\n")[1].split("\n```")[0]
    assert cmd.endswith("--name digits-lenet")
    assert _parse_command(cmd) == TrainConfig.from_dict(read_json(digits_run / "config.json"))


@pytest.mark.parametrize("cfg", [
    TrainConfig(model="simple_cnn", dataset="folder:/my photos/it's here", augment=True, tta=True, lr=3e-4,
                weight_decay=0.0, optimizer="adamax", label_smoothing=0.1, patience=3, input_size=48),
    TrainConfig(model="lenet5", dataset="mnist", epochs=1, batch_size=64, lr=0.05, schedule="onecycle",
                preset="mnist-lenet5"),
])
def test_reproduce_command_round_trips_any_config(cfg):
    """Every option is spelled out, so model defaults and presets cannot change what the command trains."""
    assert _parse_command(reproduce_command(cfg)) == cfg


def test_cards_only_for_finished_runs(runs):
    run = runs / "half"
    run.mkdir(parents=True)
    write_json(run / "config.json", TrainConfig().to_dict())
    write_json(run / "status.json", {"state": "diverged"})
    assert read_model_card("half") is None
    with pytest.raises(CnnError, match="needs a finished run"):
        write_model_card("half")
    assert not (run / "model_card.md").exists()
