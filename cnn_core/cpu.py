"""The cores this process may use (torch-free: the image loader asks too)."""

from __future__ import annotations

import os


def usable_cores() -> int:
    """The CPUs this process may run on."""
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
