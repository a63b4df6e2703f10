"""``show``: look at a dataset before training on it (the Data page's pictures and numbers, as PNG files and one
line, or JSON)."""

from __future__ import annotations

import argparse
import json
import re
from pathlib import Path

from ..config.train_config import meta
from .base import command

PER_CLASS = 8  # images per class on the samples sheet
MAX_ROWS = 30  # classes on the sheet (Caltech-101 would be a poster)
AUGMENTED = 4, 5  # images, augmented draws of each


def add_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("dataset", help=meta("dataset").help)
    p.add_argument("--out", default=".", help="folder for the PNG pictures (default: here)")
    p.add_argument("--seed", type=int, default=0, help="which random images the pictures show")
    p.add_argument("--json", action="store_true", help="print the summary as JSON instead of one line")


@command("show", "class counts, statistics, duplicates, sample and augmentation pictures of a dataset", add_args)
def cmd_show(args: argparse.Namespace) -> int:
    from PIL import Image

    from ..data.inspect import sheet
    from ..engine import preview

    lk = preview.look(args.dataset, args.data_dir)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    stem = re.sub(r"[^A-Za-z0-9_-]+", "-", Path(args.dataset.removeprefix("folder:")).name or "dataset")
    rows = preview.samples(lk, PER_CLASS, args.seed)[:MAX_ROWS]
    written = {"samples": out / f"{stem}-samples.png", "augment": out / f"{stem}-augment.png"}
    Image.fromarray(sheet(rows, labels=lk.prep.classes, label_width=120)).save(written["samples"])
    Image.fromarray(sheet(preview.augment_preview(lk, *AUGMENTED, args.seed))).save(written["augment"])
    if args.json:
        print(json.dumps({**lk.summary.to_dict(), "augmentation": preview.augmentation_text(lk),
                          "pictures": {k: str(v) for k, v in written.items()}}))
    else:
        print(f"{lk.summary.line()}; pictures: {written['samples']}, {written['augment']}")
    return 0
