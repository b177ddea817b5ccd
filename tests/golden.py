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


def official_configs(name: str) -> dict:
    """The ``configs`` of ``shared/golden/<name>/official_state_dict.json`` (full-size official layouts)."""
    return json.loads(shared_path("golden", name, "official_state_dict.json").read_text())["configs"]


def meta_state_dict(listing: dict):
    """``{name: [shape, dtype]}`` -> a state dict of meta tensors (no memory): detection and inference
    of hyper-parameters from full-size official layouts."""
    import torch

    return {k: torch.empty(shape, dtype=getattr(torch, dt, torch.float32), device="meta") for k, (shape, dt) in listing.items()}


def assert_close(a, b, atol: float) -> None:
    """Same shape and max |a - b| <= atol (the golden fixtures' tolerance)."""
    assert a.shape == b.shape, (a.shape, b.shape)
    diff = (a - b).abs().max().item()
    assert diff <= atol, f"max |diff| {diff} > {atol}"


def assert_official_layout(model, cfg: dict, label: str = "") -> None:
    """``model`` (best built on the meta device) has the official state-dict names, shapes and dtypes
    and parameter count of ``cfg`` (one config of ``official_state_dict.json``), and its key count
    where the config records one."""
    ours = {k: [list(v.shape), str(v.dtype).removeprefix("torch.")] for k, v in model.state_dict().items()}
    ref = {k: [list(s), d] for k, (s, d) in cfg["state_dict"].items()}
    missing, extra = sorted(set(ref) - set(ours)), sorted(set(ours) - set(ref))
    assert not missing and not extra, f"{label}: missing {missing[:5]}, unexpected {extra[:5]}"
    wrong = [k for k in ref if ours[k] != ref[k]]
    assert not wrong, f"{label}: {[(k, ours[k], ref[k]) for k in wrong[:5]]}"
    if "n_keys" in cfg:
        assert len(ours) == cfg["n_keys"], label
    assert sum(p.numel() for p in model.parameters()) == cfg["param_count"], label
