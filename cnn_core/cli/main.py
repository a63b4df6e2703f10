"""``python -m cnn_core <command>``.

Exit 0 on success, 2 with a one-line ``error: ...`` on bad input, 1 with a one-line message on an unexpected
failure (set CNN_DEBUG=1 for the traceback). Never a traceback by default.
"""

from __future__ import annotations

import os
import sys

from ..core import settings
from ..core.errors import ERROR_PREFIX, CnnError
from . import estimate, evaluate, explain, listing, lrfind, show, sweep, train  # noqa: F401  (each registers its commands)
from .base import COMMANDS, Parser


def build_parser() -> Parser:
    p = Parser(prog="python -m cnn_core", description="Train, evaluate and use CNN image classifiers.")
    p.add_argument("--checkpoints", help="runs folder (default $CNN_CHECKPOINTS or ./checkpoints)")
    p.add_argument("--data-dir", help="datasets folder (default $CNN_DATA_DIR or ./data)")
    sub = p.add_subparsers(dest="command", parser_class=Parser, metavar="command")
    sub.required = True
    order = ["models", "datasets", "show", "train", "lr-find", "estimate", "evaluate", "predict", "explain", "runs",
             "sweep", "export"]
    for name in sorted(COMMANDS, key=lambda n: order.index(n) if n in order else len(order)):
        c = COMMANDS[name]
        c.add_args(sub.add_parser(name, help=c.help, description=c.description or c.help))
    return p


def main(argv: list[str] | None = None) -> int:
    try:
        args = build_parser().parse_args(argv)
        return COMMANDS[args.command].run(args)
    except CnnError as e:
        print(f"{ERROR_PREFIX}{e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:  # the reader went away (`... | head`): nothing more to say to it
        sys.stdout = open(os.devnull, "w")  # noqa: SIM115 - also for the interpreter's own flush at exit
        return 0
    except Exception as e:  # noqa: BLE001 - the promise is: never a traceback unless asked for
        if settings.debug():
            raise
        print(f"{ERROR_PREFIX}unexpected {type(e).__name__}: {str(e).splitlines()[0][:200] if str(e) else ''} "
              "(set CNN_DEBUG=1 for details)", file=sys.stderr)
        return 1
