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
