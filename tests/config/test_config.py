import pytest

from cnn_core.config import PRESETS, TrainConfig, preset_options
from cnn_core.core.errors import CnnError


def test_defaults_are_valid_and_round_trip():
    cfg = TrainConfig()
    assert TrainConfig.from_dict(cfg.to_dict()) == cfg

@pytest.mark.parametrize("field,value,needle", [
    ("epochs", 0, "epochs"), ("batch_size", -1, "batch size"), ("optimizer", "rmsprop", "sgd, adam, adamw, adamax"),
    ("lr", float("nan"), "learning rate"), ("lr", 0, "learning rate"), ("schedule", "poly", "cosine"),
    ("device", "tpu", "auto, cpu, cuda"), ("val_fraction", 0.7, "validation"), ("momentum", 1.0, "momentum"),
    ("epochs", True, "epochs"), ("input_size", 4, "input size"),
])
def test_bad_values_are_refused_naming_the_choices(field, value, needle):
    with pytest.raises(CnnError, match=needle):
        TrainConfig(**{field: value})

def test_from_dict_ignores_unknown_keys():
    assert TrainConfig.from_dict({"model": "resnet18", "from_the_future": 1}).model == "resnet18"

def test_presets_validate_and_unknown_preset_names_choices():

    assert PRESETS
    with pytest.raises(CnnError, match="choose one of"):
        preset_options("nope")
    for name in PRESETS:
        assert TrainConfig(**preset_options(name)).preset == name


def test_fine_tuning_options_are_declared_once_for_the_flags_and_the_models():
    """--finetune's choices and the defaults its help states are what every pretrained builder takes and checks."""
    import argparse
    import inspect

    from cnn_core.config.argv import FINETUNE_MODES, TUNING_DEFAULTS, add_train_options
    from cnn_core.models import get_spec, list_models, make_config
    from cnn_core.models.pretrained import check_options, is_finetunable

    p = argparse.ArgumentParser()
    add_train_options(p)
    flags = {a.dest: a for a in p._actions}
    assert tuple(flags["finetune"].choices) == FINETUNE_MODES
    assert f"(default: {TUNING_DEFAULTS['finetune']})" in flags["finetune"].help
    assert f"(default: {TUNING_DEFAULTS['backbone_lr']:g})" in flags["backbone_lr"].help
    tuned = [m for m in list_models() if is_finetunable(m)]
    assert tuned
    for m in tuned:
        params = inspect.signature(get_spec(m).builder).parameters
        assert {k: params[k].default for k in TUNING_DEFAULTS} == TUNING_DEFAULTS, m
    for mode in FINETUNE_MODES:
        check_options(mode, TUNING_DEFAULTS["backbone_lr"])
        assert make_config(model=tuned[0], dataset="digits", extra={"finetune": mode}).extra == {"finetune": mode}
    with pytest.raises(CnnError, match=f"one of {', '.join(FINETUNE_MODES)}, got 'some'"):
        make_config(model=tuned[0], dataset="digits", extra={"finetune": "some"})
    with pytest.raises(CnnError, match="--finetune and --backbone-lr apply to pretrained models"):
        make_config(model="lenet5", dataset="digits", extra={"backbone_lr": 0.5})


def test_merge_falls_back_to_the_model_fields_own_default(monkeypatch):
    """No model given anywhere: the one default is TrainConfig.model's (not a copy of it in config.merge)."""
    from cnn_core.config.merge import merge
    from cnn_core.config.train_config import FIELDS

    asked = []
    assert merge({}, lambda m: asked.append(m) or {}).model == FIELDS["model"].default == asked[0]
    monkeypatch.setattr(FIELDS["model"], "default", "resnet18")
    assert merge({"dataset": "digits"}, lambda m: asked.append(m) or {}).model == "resnet18" == asked[-1]
