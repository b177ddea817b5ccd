"""ONNX export (restore.models.onnx, `restore export`): every architecture restore implements, and the fused
window attention of spandrel's, exports to a graph that ONNX Runtime runs to PyTorch's output (issue 21)."""

from __future__ import annotations

import copy
import io

import numpy as np
import pytest
import spandrel
import torch

from restore.errors import RestoreError
from restore.models import RestorationModel
from restore.models.archs import registered
from restore.models.fused_attention import fuse_attention
from restore.models.onnx import OnnxForward, export_onnx, onnx_session, runtime_missing
from tests.archs.test_contract import CASES
from tests.test_fused_attention import _randomise, _tiny


#: Max abs difference allowed between ONNX Runtime and PyTorch fp32 (outputs of order 1).
ATOL = 1e-4


def _restore_model(case, kwargs) -> tuple[RestorationModel, tuple]:
    torch.manual_seed(0)
    full = case.full_kwargs(kwargs)
    net = case.perturb(case.cls(**full), 1)
    desc = registered()[case.arch].arch.load(copy.copy(net.state_dict()))
    desc.model.eval()
    return RestorationModel.from_descriptor(desc, case.arch), case.rt_input(full)


def _ort(model: RestorationModel, shape: tuple) -> tuple[np.ndarray, np.ndarray]:
    buf = io.BytesIO()
    export_onnx(model, buf, shape[2:], batch=shape[0])
    x = torch.rand(*shape, generator=torch.Generator().manual_seed(3))
    with torch.inference_mode():
        want = model.module(x).numpy()
    got = onnx_session(buf.getvalue(), "onnxruntime", 1)(x.numpy())
    return got, want


# the first tiny configuration of every architecture restore implements
FIRST = [pytest.param(c, c.variants[0][1], id=c.arch) for c in CASES if c.variants]


def test_every_implemented_architecture_has_a_case():
    assert {c.arch for c in CASES if c.variants} >= set(registered()) - {"RRFormerSwinIR"}


@pytest.mark.parametrize(("case", "kwargs"), FIRST)
def test_export_runs_like_torch(case, kwargs):
    model, shape = _restore_model(case, kwargs)
    assert shape[1] == model.input_channels
    got, want = _ort(model, shape)
    assert got.shape == want.shape
    assert np.abs(got - want).max() <= ATOL, np.abs(got - want).max()


@pytest.mark.parametrize("arch", ["SwinIR", "HAT", "DRCT", "DAT", "RGT"])
def test_fused_window_attention_exports(arch):
    """The fused forwards (shift masks on the edge windows only) export; batch 2 at a size other than the
    training size, so masks are rebuilt and the edge windows are written back."""
    ref = _tiny(arch).eval()
    _randomise(ref)
    fused = copy.deepcopy(ref)
    assert fuse_attention(fused) > 0
    desc = spandrel.ImageModelDescriptor(fused, fused.state_dict(), architecture=spandrel.MAIN_REGISTRY.get(arch).architecture,
                                         purpose="SR", tags=[], supports_half=False, supports_bfloat16=True, scale=2,
                                         input_channels=3, output_channels=3)
    model = RestorationModel.from_descriptor(desc, arch)
    got, _ = _ort(model, (2, 3, 20, 28))
    x = torch.rand(2, 3, 20, 28, generator=torch.Generator().manual_seed(3))
    with torch.inference_mode():
        official = ref(x).numpy()
    assert np.abs(got - official).max() <= ATOL, np.abs(got - official).max()


def test_onnx_forward_exports_per_shape_and_runs_the_network_alone():
    case = next(c for c in CASES if c.arch == "Restormer")
    model, _ = _restore_model(case, case.variants[0][1])
    fwd = OnnxForward(model, "onnxruntime", threads=1)
    for shape in [(1, model.input_channels, 16, 24), (1, model.input_channels, 24, 16), (1, model.input_channels, 16, 24)]:
        x = torch.rand(*shape)
        with torch.inference_mode():
            assert (fwd(x) - model.module(x)).abs().max() <= ATOL
    assert len(fwd._runs) == 2
    # a side-input model: the export is of the network alone, on its full input (image + side channels), and
    # forward_for puts the image's own side input in front of it
    side = next(c for c in CASES if c.arch == "DenoiseUNet")
    denoiser, _ = _restore_model(side, side.variants[0][1])
    fwd = OnnxForward(denoiser, "onnxruntime", threads=1)
    x = torch.rand(1, denoiser.input_channels, 32, 48)
    assert denoiser.input_channels > denoiser.tile_input_channels
    with torch.inference_mode():
        assert (fwd(x) - denoiser.module(x)).abs().max() <= ATOL


def test_export_refuses_sizes_the_model_cannot_take():
    case = next(c for c in CASES if c.arch == "Rawformer")
    model, shape = _restore_model(case, case.variants[0][1])
    with pytest.raises(RestoreError, match="runs only at"):
        export_onnx(model, io.BytesIO(), (shape[2] + 8, shape[3]))


@pytest.mark.skipif(runtime_missing("openvino") is not None, reason="openvino is not installed (the [openvino] extra)")
def test_openvino_runs_the_export_in_fp32():
    case = next(c for c in CASES if c.arch == "Histoformer")
    model, shape = _restore_model(case, case.variants[0][1])
    buf = io.BytesIO()
    export_onnx(model, buf, shape[2:])
    x = torch.rand(*shape, generator=torch.Generator().manual_seed(3))
    with torch.inference_mode():
        want = model.module(x).numpy()
    got = onnx_session(buf.getvalue(), "openvino", 1)(x.numpy())
    assert np.abs(got - want).max() <= ATOL


def test_runtime_missing_names_the_extra(monkeypatch):
    import importlib.util

    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "openvino" else real(name, *a))
    assert "restore-imaging[openvino]" in runtime_missing("openvino")
    assert "unknown runtime" in runtime_missing("tensorrt")


def test_export_command(tmp_path):
    from click.testing import CliRunner
    from safetensors.torch import save_file

    from restore.cli import cli

    case = next(c for c in CASES if c.arch == "Restormer")
    model, _ = _restore_model(case, case.variants[0][1])
    ckpt = tmp_path / "tiny.safetensors"
    save_file({k: v.contiguous() for k, v in model.module.state_dict().items()}, str(ckpt))
    out = tmp_path / "tiny.onnx"
    r = CliRunner().invoke(cli, ["export", str(ckpt), str(out), "--size", "24x16"])
    assert r.exit_code == 0, r.output
    assert "ONNX Runtime matches PyTorch" in r.output and out.stat().st_size > 0
    x = torch.rand(1, model.input_channels, 16, 24)
    with torch.inference_mode():
        want = model.module(x).numpy()
    assert np.abs(onnx_session(out.read_bytes(), "onnxruntime", 1)(x.numpy()) - want).max() <= ATOL
    for args, msg in ((["x.txt"], "must end in .onnx"), (["bad.onnx", "--size", "24by16"], "WIDTHxHEIGHT")):
        r = CliRunner().invoke(cli, ["export", str(ckpt), str(tmp_path / args[0]), *args[1:]])
        assert r.exit_code == 2 and msg in r.output and "Traceback" not in r.output
    assert sorted(p.name for p in tmp_path.iterdir()) == ["tiny.onnx", "tiny.safetensors"]
