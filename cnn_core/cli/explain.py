"""``explain``: why a run's model classifies one photo as it does, as PNG files and one line (or JSON)."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from ..core.errors import CnnError, ImageError
from .base import command

INLINE_SIDE = 64  # --json prints the heatmap inline up to this input side (4,096 numbers); beyond, only the .npy


def _explain_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("run")
    p.add_argument("image")
    p.add_argument("--class", dest="target", metavar="NAME", help="explain this class (default: the predicted one)")
    p.add_argument("--out", metavar="DIR", help="folder for the files (default: ./explain-<image name>)")
    p.add_argument("--top-k", type=int, default=3, help="classes in the prediction (default: 3)")
    p.add_argument("--maps", type=int, default=8, help="strongest activation maps per stage (default: 8)")
    p.add_argument("--json", action="store_true",
                   help=f"print JSON: the prediction, the explained class, the files written and the heatmap, a "
                        f"nested list (input size x size, 0..1) when the model's input side is at most "
                        f"{INLINE_SIDE}, else null; it is always written as heatmap.npy too")


@command("explain", "why a run's best checkpoint classifies a photo so: Grad-CAM overlays, each stage's "
         "activation maps and the first-layer filters as PNG files", _explain_args)
def cmd_explain(args: argparse.Namespace) -> int:
    from ..evaluation.explain import explain
    from ..evaluation.predictor import Predictor

    if args.top_k < 1 or args.maps < 1:
        raise CnnError("--top-k and --maps must be at least 1")
    pred = Predictor.from_run(args.run, args.checkpoints)
    try:
        e = explain(pred, args.image, args.target, args.maps, args.top_k)
    except ImageError as err:  # predict's own refusal, word for word
        print(json.dumps({"image": args.image, "error": str(err)}) if args.json else f"{args.image}: error: {err}")
        return 2
    out = Path(args.out) if args.out else Path(f"explain-{Path(args.image).stem or 'image'}")
    files = e.save(out)
    heat = e.heatmap
    if args.json:
        inline = heat.to_dict()["heatmap"] if pred.size <= INLINE_SIDE else None
        print(json.dumps({"run": pred.run, "image": args.image, "top_k": e.top_k, "class": heat.label,
                          "probability": round(heat.probability, 5), "layer": heat.layer, "grid": list(heat.grid),
                          "stages": [{"name": s.name, "shape": list(s.shape), "strongest": s.strongest}
                                     for s in e.stages],
                          "files": files, "heatmap": inline, "heatmap_npy": files["heatmap.npy"]}))
        return 0
    rest = ", ".join(f"{t['label']} {t['probability']:.1%}" for t in e.top_k[1:])
    print(f"{args.image}: {e.top_k[0]['label']} {e.top_k[0]['probability']:.1%}" + (f" (then {rest})" if rest else "")
          + f"; Grad-CAM for {heat.label} at {heat.layer} ({heat.grid[0]}x{heat.grid[1]}); "
          f"wrote {len(files)} files to {out}/")
    return 0
