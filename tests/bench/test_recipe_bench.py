"""bench.recipe's ablation really turns each idea of cifar10-fast off, and only that idea."""

from __future__ import annotations

import argparse
import json

import pytest

from bench import recipe
from cnn_core.config.argv import add_train_options, explicit_options
from cnn_core.models import make_config

PRESET = make_config(preset="cifar10-fast")


def _config(flags: list[str]):
    if "--set" in flags:  # a model argument (bench.recipe_case): the preset plus that argument
        extra = json.loads(flags[flags.index("--set") + 1])
        return PRESET.replace(extra={**PRESET.extra, **extra})
    p = argparse.ArgumentParser()
    add_train_options(p)
    return make_config(preset="cifar10-fast", **explicit_options(p.parse_args(flags)))


@pytest.mark.parametrize("idea", sorted(recipe.IDEAS))
def test_each_ablation_row_changes_one_setting_of_the_preset(idea):
    off = _config(recipe.IDEAS[idea][1])
    changed = {k for k, v in off.to_dict().items() if v != PRESET.to_dict()[k]}
    assert len(changed) == 1, changed


def test_the_preset_uses_every_idea_the_ablation_turns_off():
    assert PRESET.lookahead and PRESET.schedule == "triangle" and PRESET.flip_mode == "alternate"
    assert PRESET.crop_fill == "reflect" and PRESET.tta and PRESET.tta_shift == 1 and PRESET.augment


def test_the_summary_counts_every_run():
    rows = [{"test_accuracy": a, "wall_seconds": w} for a, w in ((0.9, 500), (0.88, 520), (0.89, 510))]
    d = recipe.describe(rows)
    assert d["runs"] == 3 and d["mean_accuracy"] == pytest.approx(0.89) and d["min_accuracy"] == 0.88
    assert d["max_wall_seconds"] == 520 and d["median_wall_seconds"] == 510
