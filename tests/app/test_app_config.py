"""The server settings a class needs, and that they agree with the core's own limits."""

from __future__ import annotations

import tomllib
from pathlib import Path

from cnn_core.imaging.loader import MAX_BYTES

CONFIG = Path(__file__).resolve().parents[2] / ".streamlit" / "config.toml"


def test_server_settings_for_a_class():
    cfg = tomllib.loads(CONFIG.read_text())
    assert cfg["server"]["maxUploadSize"] * 1024 * 1024 == MAX_BYTES  # the uploader and the loader agree
    assert cfg["server"]["enableXsrfProtection"] is True
    assert cfg["server"]["headless"] is True
    assert cfg["client"]["showErrorDetails"] in ("none", False)  # no tracebacks in students' browsers
    assert cfg["browser"]["gatherUsageStats"] is False
