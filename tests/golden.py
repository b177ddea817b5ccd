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


#: How far a float32 run may drift from the stored float32 output on another CPU or torch version.
#: Architectures that sort or threshold features flip near-ties there: the official Histoformer code
#: itself drifts 8.3e-4 in float32 on torch 2.14.1 (golden/README.md).  The exact check is done in
#: float64; this bound only catches a float32 path that is wrong, not one that rounds differently.
FLOAT32_DRIFT = 1e-2


def assert_golden(model, inputs, expected, atol: float, call=None):
    """Check a golden output the way ``shared/golden/README.md`` says: in float64.

    A deep copy of ``model`` runs in float64 on the float64 inputs and must lie
    within ``atol`` of the stored (float32) ``expected``: the official code's own
    float64 run lies within 6e-6 of it on any torch version and CPU.  The float32
    run must return float32 within :data:`FLOAT32_DRIFT`.

    Args:
        model: The module (left unchanged, in float32).
        inputs: Input tensors (float32), passed positionally.
        expected: The stored output, or a tuple of them matching ``call``'s result.
        atol: The fixture's ``atol``.
        call: ``call(module, *inputs) -> tensor`` (default ``module(*inputs)``), for
            sub-module methods such as ``forward_features``.

    Returns:
        The float32 output.
    """
    import copy

    import torch

    call = call or (lambda m, *xs: m(*xs))
    m64 = copy.deepcopy(model).double().eval()
    with torch.no_grad():
        out64 = call(m64, *[t.double() for t in inputs])
        out32 = call(model, *inputs)
    assert out64.dtype == torch.float64, "the float64 run did not stay in float64"
    assert_close(out64, expected.double(), atol)
    assert out32.dtype == torch.float32
    assert_close(out32, expected, max(atol, FLOAT32_DRIFT))
    return out32


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
