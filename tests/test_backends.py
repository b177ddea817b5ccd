"""`backend: auto` and the inference backends (restore.backends, issue 21): the choice rule on mocked timing
tables, the cache, bf16 never where the CPU emulates it, and the named backends' outputs."""

from __future__ import annotations

import random

import numpy as np
import pytest
import torch

from restore import backends
from restore.backends import BACKENDS, MARGIN, Choice, backend_for, choose, eligible, unavailable
from restore.errors import RestoreError
from restore.models import load_model
from restore.pipeline.model_run import RunOptions, RunState, run_model
from restore.pipeline.base import Context

ALL = {b: None for b in BACKENDS}


def _row(s, diff=0.0):
    return {"seconds": s, "max_diff": diff}


def test_choose_fastest_allowed_within_quality():
    table = {"torch": _row(1.0), "torch-bf16": _row(0.5, 0.05), "onnxruntime": _row(0.6, 3e-6), "openvino": _row(0.4, 2e-3)}
    # openvino is fastest but 2e-3 off; bf16's quality is the architecture's verdict (allowed = measured)
    assert choose(table, ALL).backend == "torch-bf16"
    assert choose(table, {**ALL, "torch-bf16": "bf16 cost not measured"}).backend == "onnxruntime"


def test_choose_needs_the_margin_and_a_torch_timing():
    assert choose({"torch": _row(1.0), "onnxruntime": _row(1.0 - MARGIN / 2)}, ALL).backend == "torch"
    assert choose({"torch": _row(1.0), "onnxruntime": _row(1.0 - 2 * MARGIN)}, ALL).backend == "onnxruntime"
    assert choose({"onnxruntime": _row(0.1)}, ALL).backend == "torch"
    assert choose({"torch": _row(1.0), "onnxruntime": {"error": "boom"}}, ALL).backend == "torch"


def test_a_separate_runtime_must_beat_the_best_torch_path():
    table = {"torch": _row(1.0), "torch-bf16": _row(0.45), "onnxruntime": _row(0.43, 1e-6)}
    assert choose(table, ALL).backend == "torch-bf16"  # measured on DAT-light: 445 vs 430 ms, noise
    table["onnxruntime"] = _row(0.40, 1e-6)
    assert choose(table, ALL).backend == "onnxruntime"
    assert "excluded" in choose({"torch": _row(1.0), "openvino": _row(0.2, 0.37)}, ALL).reason


def test_choose_never_slower_than_torch_fp32():
    rng = random.Random(0)
    for _ in range(500):
        table = {b: (_row(rng.uniform(0.1, 2.0), rng.choice([0.0, 1e-5, 1e-3])) if rng.random() > 0.2 else {"error": "x"})
                 for b in BACKENDS}
        table["torch"] = _row(rng.uniform(0.1, 2.0))
        allowed = {b: (None if rng.random() > 0.3 else "no") for b in BACKENDS}
        c = choose(table, allowed)
        assert table[c.backend]["seconds"] <= table["torch"]["seconds"]
        assert c.backend == "torch" or (allowed[c.backend] is None
                                        and (c.backend == "torch-bf16" or table[c.backend]["max_diff"] <= backends.MAX_DIFF))


@pytest.fixture(scope="module")
def dat():
    return load_model("dat-light-x2")


@pytest.fixture(autouse=True)
def _own_cache(tmp_path, monkeypatch):
    """Each test its own backends.json (a choice cached by one test must not decide another's)."""
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))


def test_no_bf16_where_the_cpu_emulates_it(dat, monkeypatch):
    monkeypatch.setattr("restore.tiling.cpu_has_fast_bf16", lambda: False)
    cpu = torch.device("cpu")
    assert "emulated" in unavailable(dat, "torch-bf16", cpu)
    assert eligible(dat, "torch-bf16", cpu) is not None
    seen = []

    def fake(model, candidates, device, compiled=None):
        seen.append(list(candidates))
        return {"torch": _row(1.0), "torch-bf16": _row(0.01)}

    choice = backend_for(dat, cpu, "auto", measure_fn=fake)
    assert "torch-bf16" not in (seen[0] if seen else []) and choice.backend != "torch-bf16"


def test_bf16_allowed_only_with_the_measured_verdict(dat, monkeypatch):
    monkeypatch.setattr("restore.tiling.cpu_has_fast_bf16", lambda: True)
    cpu = torch.device("cpu")
    assert dat.info.cpu_bf16_ok and eligible(dat, "torch-bf16", cpu) is None
    assert eligible(dat, "torch-bf16", cpu, "fp32") == "precision fp32"
    assert eligible(dat, "onnxruntime", cpu, "bf16") == "precision bf16"
    assert backend_for(dat, cpu, "bf16") == Choice("torch-bf16", "backend auto: torch-bf16 (precision bf16)")


def test_auto_is_measured_once_and_cached(dat, monkeypatch):
    monkeypatch.setattr("restore.tiling.cpu_has_fast_bf16", lambda: False)
    calls = []

    def fake(model, candidates, device, compiled=None):
        calls.append(1)
        return {"torch": _row(1.0), **{b: _row(0.5 if b == "torch-compile" else 2.0) for b in candidates if b != "torch"}}

    first = backend_for(dat, torch.device("cpu"), "fp32", measure_fn=fake, compile=True)
    again = backend_for(dat, torch.device("cpu"), "fp32", measure_fn=fake, compile=True)
    assert first.backend == again.backend == "torch-compile" and len(calls) == 1
    assert "measured now" in first.reason and "measured before" in again.reason and "torch 1000 ms" in first.reason


def test_auto_on_other_devices_is_torch(dat):
    assert backend_for(dat, torch.device("meta"), "auto").backend == "torch"


def test_unknown_backend(dat):
    with pytest.raises(RestoreError, match="unknown backend"):
        unavailable(dat, "tensorrt", torch.device("cpu"))


def test_named_and_auto_backends_match_torch_in_a_run(dat):
    img = np.random.default_rng(0).random((40, 52, 3), dtype=np.float32)
    ref = run_model(dat, img, RunOptions(tile=32, overlap=4, precision="fp32"))
    y = run_model(dat, img, RunOptions(tile=32, overlap=4, backend="onnxruntime"))
    assert np.abs(y - ref).max() <= 1e-4
    ctx = Context()
    state = RunState()
    fake = {"torch": _row(1.0), "onnxruntime": _row(0.5, 1e-6)}
    from unittest import mock

    with mock.patch.object(backends, "measure", lambda *a, **k: fake):
        y = run_model(dat, img, RunOptions(tile=32, overlap=4, backend="auto", precision="fp32"), ctx=ctx, state=state)
    assert state.backend.backend == "onnxruntime" and any("backend auto: onnxruntime" in n for n in ctx.notes)
    assert np.abs(y - ref).max() <= 1e-4
    # an image smaller than the tile runs whole, a shape of its own: the fastest PyTorch path, not the runtime
    small = img[:20, :24]
    run_model(dat, small, RunOptions(tile=32, overlap=4, backend="auto", precision="fp32"), ctx=ctx, state=state)
    assert any("backend auto: torch for images run whole" in n for n in ctx.notes)
    assert list(state.backend_forward) == [("onnxruntime", "cpu")]


def test_auto_measures_nothing_for_an_image_run_whole_when_only_fp32_torch_may_run(dat):
    """A whole image would use a PyTorch path anyway; with bf16 and compile excluded that is fp32 torch, so the
    first small file of a run does not pay for timing the runtimes (the RAW denoiser's example DNG)."""
    from unittest import mock

    img = np.random.default_rng(1).random((20, 24, 3), dtype=np.float32)
    ctx, state = Context(), RunState()
    with mock.patch.object(backends, "measure", side_effect=AssertionError("measured")):
        y = run_model(dat, img, RunOptions(tile=32, overlap=4, backend="auto", precision="fp32"), ctx=ctx, state=state)
    assert state.backend is None and any("no other PyTorch path" in n for n in ctx.notes)
    assert np.array_equal(y, run_model(dat, img, RunOptions(tile=32, overlap=4, precision="fp32")))
    with mock.patch.object(backends, "measure", side_effect=AssertionError("measured")), pytest.raises(AssertionError):
        run_model(dat, img, RunOptions(tile=16, overlap=4, backend="auto", precision="fp32"), ctx=ctx, state=state)


def test_measure_times_and_compares(dat):
    table = backends.measure(dat, ["torch"], torch.device("cpu"), repeat=1)
    assert table["torch"]["seconds"] > 0 and table["torch"]["max_diff"] == 0.0


def test_measure_interleaves_rounds_and_keeps_going_when_a_path_fails(dat, monkeypatch):
    """Warm-up of every path first, then rounds A B C, A B C; a path that fails mid-way becomes an error row."""
    calls = []

    def fake_build(model, name, device, compiled=None):
        def forward(x):
            calls.append(name)
            if name == "openvino" and calls.count(name) == 3:
                raise RuntimeError("kernel failed\nsecond line")
            return x if name != "onnxruntime" else x + 1e-3
        return forward, torch.float32

    monkeypatch.setattr(backends, "build_forward", fake_build)
    table = backends.measure(dat, ["torch", "onnxruntime", "openvino"], torch.device("cpu"), repeat=3)
    assert calls[:3] == ["torch", "onnxruntime", "openvino"]  # warm-ups
    assert calls[3:6] == ["torch", "onnxruntime", "openvino"]  # round 1, interleaved
    assert calls[6:] == ["torch", "onnxruntime", "openvino", "torch", "onnxruntime"]  # openvino dropped in round 2
    assert table["openvino"] == {"error": "kernel failed"}
    assert table["onnxruntime"]["max_diff"] == pytest.approx(1e-3, rel=1e-3) and table["torch"]["max_diff"] == 0.0
    assert all(0 <= table[n]["seconds"] < 1 for n in ("torch", "onnxruntime"))


def test_step_option_is_validated():
    from pydantic import ValidationError

    from restore.pipeline.steps.model import ModelOptions

    assert ModelOptions(name="x", backend="auto").backend == "auto"
    with pytest.raises(ValidationError):
        ModelOptions(name="x", backend="tensorrt")


def test_gemm_rate_and_flops(dat, monkeypatch):
    assert backends.gemm_rate(n=256, repeat=1) > 0
    # DAT-light x2: the paper's 194 GFLOPs at 1280x720 output (0.84 MFLOP per input pixel) leave out the
    # attention products; with them, about 1.6 MFLOP per pixel, whichever attention kernel runs
    per_px = {}
    for kernel in ("1", "0"):
        monkeypatch.setenv("RESTORE_BLOCKED_ATTENTION", kernel)
        per_px[kernel] = backends.model_flops(dat, (32, 32)) / 32**2
    assert 1.4e6 < per_px["1"] < 1.8e6, per_px
    assert per_px["1"] <= per_px["0"] < 1.2 * per_px["1"], per_px  # the fused kernel re-runs the edge windows


def test_compile_only_when_asked(dat):
    cpu = torch.device("cpu")
    assert eligible(dat, "torch-compile", cpu) == "compile: false"
    assert eligible(dat, "torch-compile", cpu, compile=True) is None


def test_export_is_cached_per_weights_and_shape(dat, tmp_path, monkeypatch):
    from restore.models import onnx as ox

    calls = []
    real = ox.export_onnx
    monkeypatch.setattr(ox, "export_onnx", lambda *a, **k: (calls.append(a[2]), real(*a, **k))[1])
    first = ox.cached_export(dat, (32, 40))
    assert ox.cached_export(dat, (32, 40)) == first and calls == [(32, 40)]
    ox.cached_export(dat, (40, 32))
    assert calls == [(32, 40), (40, 32)] and len(list((tmp_path / "cache" / "restore" / "onnx").glob("*.onnx"))) == 2
    other = load_model("dat-light-x2")
    with torch.no_grad():
        next(other.module.parameters()).add_(1.0)
    ox.cached_export(other, (32, 40))
    assert len(calls) == 3  # changed weights: exported again
