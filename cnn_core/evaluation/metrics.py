"""Classification metrics as pure functions over label arrays, returning plain numbers (scikit-learn)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
from sklearn.metrics import confusion_matrix, precision_recall_fscore_support


def classification_report(y_true: Sequence[int], y_pred: Sequence[int], classes: Sequence[str]) -> dict[str, Any]:
    """accuracy, macro_f1, confusion_matrix (rows = true class), per_class precision/recall/f1/support."""
    y_true, y_pred = np.asarray(y_true), np.asarray(y_pred)
    labels = list(range(len(classes)))
    p, r, f, s = precision_recall_fscore_support(y_true, y_pred, labels=labels, zero_division=0)
    cm = confusion_matrix(y_true, y_pred, labels=labels)
    present = s > 0  # macro average over classes that occur in y_true
    return {
        "accuracy": float((y_true == y_pred).mean()) if len(y_true) else 0.0,
        "macro_f1": float(f[present].mean()) if present.any() else 0.0,
        "confusion_matrix": cm.tolist(),
        "per_class": [{"class": c, "precision": float(p[i]), "recall": float(r[i]), "f1": float(f[i]),
                       "support": int(s[i])} for i, c in enumerate(classes)],
        "classes": list(classes),
        "count": int(len(y_true)),
    }


def most_confused(cm: Sequence[Sequence[int]], classes: Sequence[str], k: int = 5) -> list[dict[str, Any]]:
    """The k largest off-diagonal cells: (true, predicted, count), largest first."""
    m = np.asarray(cm)
    pairs = [(int(m[i, j]), i, j) for i in range(len(m)) for j in range(len(m)) if i != j and m[i, j] > 0]
    pairs.sort(key=lambda t: (-t[0], t[1], t[2]))
    return [{"true": classes[i], "predicted": classes[j], "count": n} for n, i, j in pairs[:k]]
