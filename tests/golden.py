"""Helpers for the golden fixtures in ``../shared/golden`` (made with the official code).

Tests that use them skip with a clear reason when ``../shared`` is absent.
Set ``RESTORE_SHARED`` to point elsewhere.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

SHARED = Path(os.environ.get("RESTORE_SHARED", Path(__file__).resolve().parents[1].parent / "shared"))


def shared_path(*parts: str) -> Path:
    """Path under ``../shared``; skips the calling test if it does not exist."""
    p = SHARED.joinpath(*parts)
    if not p.exists():
        pytest.skip(f"shared data not available: {p} (set RESTORE_SHARED or place ../shared beside the checkout)")
    return p


def load_golden(name: str):
    """Return ``(config, weights, io)`` of ``shared/golden/<name>``; skips if absent."""
    from safetensors.torch import load_file

    d = shared_path("golden", name)
    config = json.loads((d / "config.json").read_text())
    return config, load_file(str(d / "weights.safetensors")), load_file(str(d / "io.safetensors"))
