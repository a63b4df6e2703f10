"""User-controlled text (class, run and file names, paths, messages) is shown as text, never as markdown."""

from __future__ import annotations

import re

import pytest
from app_util import shown

from pages import ui

HOSTILE = ["[Free exam answers, log in here](https:evil.example)", "![x](https:evil.example)", "<img src=x>",
           ":red[alarm] :material/home:", "**bold** _it_ `code` ~~s~~ $x^2$", "# heading\n- item", "www.evil.example"]


@pytest.mark.parametrize("text", HOSTILE)
def test_escaped_text_has_no_markdown_left_and_shows_as_typed(text):
    out = ui.esc(text)
    assert not re.search(r"(?<!\\)[\[\]()<>*_`~$:#!]", out)  # every special character is escaped
    assert "\n" not in out  # one line: a name cannot start a heading or a list on its own line
    assert shown(type("E", (), {"value": out})()) == " ".join(text.split())  # what a student reads
