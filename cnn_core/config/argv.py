"""TrainConfig <-> command-line flags, generated from the fields' metadata.

``add_train_options`` makes one flag per field (``--batch-size``), with its help, default and type from
``Meta``; ``explicit_options`` reads back only the flags a user gave (so that model defaults and presets can
fill in the rest: see ``config.merge``); ``config_args`` is the inverse, the flags that rebuild a config.
A sweep's flags take comma-separated lists of the same values (``sweep_values``).
"""

from __future__ import annotations

import argparse
from collections.abc import Callable
from typing import Any

from ..core.errors import CnnError
from .train_config import FIELDS, TrainConfig, bounds_text, kind, meta, sweepable

# pretrained models' fine-tuning options travel in cfg.extra; they are flags too. Declared once here: the builders
# in models.pretrained take these defaults, and models.defaults checks against them
FINETUNE_MODES = ("all", "head")
TUNING_DEFAULTS: dict[str, Any] = {"finetune": "all", "backbone_lr": 0.1}
TUNING_FLAGS = {"finetune": ("--finetune", "pretrained models: fine-tune all layers (backbone at --backbone-lr x "
                             f"lr) or the new head only (default: {TUNING_DEFAULTS['finetune']})", FINETUNE_MODES),
                "backbone_lr": ("--backbone-lr", "pretrained models: backbone lr as a fraction of --lr (default: "
                                f"{TUNING_DEFAULTS['backbone_lr']:g})", ())}


def parse_bool(v: str) -> bool:
    if v.lower() in ("1", "true", "yes", "on"):
        return True
    if v.lower() in ("0", "false", "no", "off"):
        return False
    raise argparse.ArgumentTypeError(f"expected on/off, got {v!r}")


def flag(name: str) -> str:
    """The field's flag: --batch-size for batch_size, or the name its metadata gives (--early-stop)."""
    return meta(name).cli or _field_flag(name)


def _field_flag(name: str) -> str:
    return "--" + name.replace("_", "-")


def flag_names(name: str) -> list[str]:
    """Every spelling of the field's flag: its own, the field's name (kept working when the flag was renamed),
    its one-letter form."""
    m = meta(name)
    return list(dict.fromkeys([flag(name), _field_flag(name), *([m.short] if m.short else [])]))


def flag_text(v: Any) -> str:
    """A value as its flag reads it back: on/off for booleans, Python's shortest exact text for numbers."""
    return ("on" if v else "off") if isinstance(v, bool) else str(v)


def reader(name: str) -> Callable[[str], Any]:
    """How one value of field ``name`` is read from text."""
    k = kind(name)
    return parse_bool if k is bool else k


def flag_fields() -> list[str]:
    return [n for n in FIELDS if meta(n).flag and n != "preset"]


def _help(name: str) -> str:
    m, default = meta(name), FIELDS[name].default
    text = m.help
    if kind(name) in (int, float) and m.lo is not None:
        text += f"; {bounds_text(name)}"
    if name in ("model", "dataset"):
        return f"{text} (default: {flag_text(default)})"
    return f"{text} (default: {flag_text(default)}, unless the model or the preset recommends another)"


def add_train_options(p: argparse.ArgumentParser, swept: bool = False) -> None:
    """Every TrainConfig field as a flag; None means 'not given'. With ``swept``, the sweepable fields take
    comma-separated lists."""
    p.add_argument("--preset", help=meta("preset").help)
    for name in flag_fields():
        m, names = meta(name), flag_names(name)
        if swept and m.sweep:
            p.add_argument(*names, dest=name, type=_list_reader(name), metavar="V1,V2,...",
                           help=f"comma-separated values of: {_help(name)}")
        elif m.choices:
            p.add_argument(*names, dest=name, choices=m.choices, help=_help(name))
        elif kind(name) is bool:
            p.add_argument(*names, dest=name, type=parse_bool, metavar="on|off", help=_help(name))
        else:
            p.add_argument(*names, dest=name, type=reader(name),
                           metavar="N" if m.cli else name.split("_")[-1].upper(),
                           help=_help(name))
    for key, (option, text, choices) in TUNING_FLAGS.items():
        p.add_argument(option, dest=key, help=text, **({"choices": choices} if choices else {"type": float}))


def explicit_options(args: argparse.Namespace) -> dict[str, Any]:
    """The config fields a user gave as flags (a sweep's lists included); model arguments under ``extra``."""
    out = {n: getattr(args, n) for n in flag_fields() if getattr(args, n, None) is not None}
    tuning = {k: getattr(args, k) for k in TUNING_FLAGS if getattr(args, k, None) is not None}
    if tuning:
        out["extra"] = tuning
    if getattr(args, "preset", None):
        out["preset"] = args.preset
    return out


def config_args(cfg: TrainConfig) -> list[str]:
    """The train flags that rebuild ``cfg`` exactly, every field explicit (so later changes to a model's
    defaults or a preset cannot change what they train)."""
    out = ["--preset", cfg.preset] if cfg.preset else []
    for name in flag_fields():
        out += [flag(name), flag_text(getattr(cfg, name))]
    for key, (option, _, _) in TUNING_FLAGS.items():
        if key in cfg.extra:
            out += [option, flag_text(cfg.extra[key])]
    other = sorted(set(cfg.extra) - set(TUNING_FLAGS))
    if other:
        raise CnnError(f"model arguments (extra: {other}) have no command-line flags; train this config with "
                       "fit() from Python instead")
    return out


def sweep_values(name: str, text: str) -> list[Any]:
    """``"0.1, 0.01"`` -> [0.1, 0.01]: the values of a sweepable field, read as its flag reads them."""
    if name not in sweepable():
        raise CnnError(f"{name!r} cannot be swept; choose from: {', '.join(sweepable())}")
    items = [t.strip() for t in str(text).split(",")]
    if not all(items):
        raise CnnError(f"expected comma-separated values, got {text!r}")
    try:
        return [reader(name)(t) for t in items]
    except (ValueError, argparse.ArgumentTypeError):
        what = "on/off" if kind(name) is bool else kind(name).__name__
        raise CnnError(f"cannot read {text!r} as a list of {what}") from None


def _list_reader(name: str) -> Callable[[str], list[Any]]:
    def parse(text: str) -> list[Any]:
        try:
            return sweep_values(name, text)
        except CnnError as e:
            raise argparse.ArgumentTypeError(str(e)) from None
    parse.__name__ = "list"
    return parse
