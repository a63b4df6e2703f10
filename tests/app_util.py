"""Helpers for the AppTest tests of the pages: open a page through the app's router, read charts and images."""

from __future__ import annotations

import io
import json
import os
import re
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
from PIL import Image
from streamlit.testing.v1 import AppTest

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))  # the pages import pages and cnn_core from the repository root


OPERATOR_TOKEN = "test-operator-secret"


def open_page(page: str | None = None, timeout: float = 180, operator: bool = True) -> AppTest:
    """Run the app's entry script (st.navigation), then switch to ``pages/<page>.py``; no exception allowed.
    ``operator``: the session opened the operator link (else it is a visitor's)."""
    os.environ["CNN_OPERATOR_TOKEN"] = OPERATOR_TOKEN
    at = AppTest.from_file(str(ROOT / "streamlit_app.py"), default_timeout=timeout)
    if operator:
        at.query_params["operator"] = OPERATOR_TOKEN
    at.run()
    if page:
        at.switch_page(f"pages/{page}.py").run()
    assert_clean(at)
    return at


def assert_clean(at: AppTest) -> None:
    assert not at.exception, [e.value for e in at.exception]


def charts(at: AppTest) -> list[Any]:
    return list(at.get("vega_lite_chart"))


def chart_spec(chart: Any) -> dict[str, Any]:
    return json.loads(chart.proto.spec)


def chart_data(chart: Any) -> pd.DataFrame:
    """The data an Altair chart was drawn from (sent beside the spec as Arrow)."""
    raw = chart.proto.datasets[0].data.data if chart.proto.datasets else chart.proto.data.data
    return pa.ipc.open_stream(raw).read_all().to_pandas()


def marks(spec: dict[str, Any]) -> set[str]:
    layers = spec.get("layer", [spec])
    return {(m["mark"]["type"] if isinstance(m["mark"], dict) else m["mark"]) for m in layers if "mark" in m}


_ESCAPED = re.compile(r"\\([\\`*_{}\[\]()#+\-.!|:<>~$=^&])")


def shown(element: Any) -> str:
    """What a markdown element (alert, caption, markdown) shows: its source with the page's backslash escapes of
    user-controlled text (pages/ui.esc) undone."""
    return _ESCAPED.sub(r"\1", str(element.value))


def texts(at: AppTest) -> str:
    """Everything written on the page as markdown, captions, alerts and headings, for 'does it say X'."""
    parts = [shown(e) for kind in ("markdown", "caption", "error", "warning", "info", "success", "title", "subheader")
             for e in at.get(kind)]
    return "\n".join(parts)


def digit_png(index: int = 0) -> tuple[bytes, str]:
    """One of scikit-learn's 8x8 digits as a PNG, and its label."""
    from sklearn.datasets import load_digits

    d = load_digits()
    im = Image.fromarray(np.round(d.images[index] * (255 / 16)).astype(np.uint8), "L")
    buf = io.BytesIO()
    im.save(buf, "PNG")
    return buf.getvalue(), str(d.target[index])


def jpeg(size: tuple[int, int] = (120, 90), color: tuple[int, int, int] = (200, 30, 30)) -> bytes:
    buf = io.BytesIO()
    Image.new("RGB", size, color).save(buf, "JPEG")
    return buf.getvalue()


def record_downloads(monkeypatch: Any) -> Any:
    """Keep the media managers AppTest makes for each run; returns ``fetch(button) -> bytes``: what a
    download button would send (its file, or its deferred callable's result, as on a click)."""
    import streamlit.testing.v1.app_test as app_test

    made: list[Any] = []

    class Recording(app_test.MediaFileManager):
        def __init__(self, *args: Any, **kwargs: Any) -> None:
            super().__init__(*args, **kwargs)
            made.append(self)

    monkeypatch.setattr(app_test, "MediaFileManager", Recording)

    def fetch(button: Any) -> bytes:
        manager = made[-1]  # the last run's, which rendered the button
        url = button.proto.url or manager.execute_deferred(button.proto.deferred_file_id)
        return manager._storage.get_file(url.rsplit("/", 1)[-1]).content

    return fetch
