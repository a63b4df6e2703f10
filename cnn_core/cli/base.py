"""What every command shares: the registry of commands and a parser whose errors are one line. Light on
purpose: ``--help`` and the parser never import torch (command modules import what they need when they run)."""

from __future__ import annotations

import argparse
from collections.abc import Callable
from dataclasses import dataclass

from ..core.errors import CnnError

Run = Callable[[argparse.Namespace], int]
AddArgs = Callable[[argparse.ArgumentParser], None]


@dataclass(frozen=True)
class Command:
    name: str
    help: str
    add_args: AddArgs
    run: Run
    description: str | None = None


COMMANDS: dict[str, Command] = {}


def command(name: str, help: str, add_args: AddArgs = lambda p: None, description: str | None = None
            ) -> Callable[[Run], Run]:
    """Register ``python -m cnn_core NAME``: ``add_args`` declares its flags, the function runs it."""
    def wrap(fn: Run) -> Run:
        if name in COMMANDS:
            raise ValueError(f"command {name!r} is already registered")
        COMMANDS[name] = Command(name, help, add_args, fn, description)
        return fn
    return wrap


class Parser(argparse.ArgumentParser):
    def error(self, message: str) -> None:  # one line, not usage + line
        raise CnnError(f"{message} (see: {self.prog} --help)")


def train_device(device: str) -> str:
    """The device a config's ``device`` setting trains on, named as its lock is ("cpu", "cuda:0")."""
    from ..engine.device import pick_device

    return str(pick_device(device))


def need_dataset(args: argparse.Namespace, command: str) -> None:
    """A one-line CnnError when neither --dataset nor --preset says what ``command`` trains on."""
    if not args.dataset and not args.preset:
        from ..data import dataset_choices  # at run time: the parser stays light

        raise CnnError(f"{command} needs --dataset ({dataset_choices()}) or --preset")
