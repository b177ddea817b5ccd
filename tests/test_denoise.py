"""The RGB denoiser (issue 19): the noise-level estimator, the DenoiseUNet architecture, its noise-level side input
(estimated from the whole image or set by ``noise_sigma``), the model step and the shipped pipeline."""

from __future__ import annotations

import math
import sys
from pathlib import Path

import numpy as np
import pytest
import spandrel
import torch
from safetensors.torch import save_file

from restore.errors import RestoreError
from restore.image import SRGB, Image, Metadata
from restore.io import read
from restore.models.archs.rgbdenoise import DenoiseUNet, NoiseLevel
from restore.noise import estimate_sigma
from restore.pipeline import load_pipeline
from restore.pipeline.base import Context
from restore.pipeline.steps.model import ModelOptions, ModelStage

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
from data_tools import unprocess as U  # noqa: E402

WEIGHTS = ROOT / "weights" / "rgb-denoise.safetensors"
EXAMPLE = ROOT / "examples" / "chelsea.png"


def _save(model: torch.nn.Module, path: Path) -> Path:
    save_file({k: v.contiguous() for k, v in model.state_dict().items()}, str(path))
    return path


@pytest.fixture(scope="module")
def models(tmp_path_factory) -> dict[str, Path]:
    """Tiny checkpoints: ``identity`` (last layer zero), ``random`` (every weight perturbed)."""
    d = tmp_path_factory.mktemp("denoise")
    torch.manual_seed(0)
    ident = DenoiseUNet(base=4, depth=3)
    with torch.no_grad():
        ident.body.tail.weight.zero_()
        ident.body.tail.bias.zero_()
    rand = DenoiseUNet(base=4, depth=3)
    with torch.no_grad():
        for p in rand.parameters():
            p.add_(0.05 * torch.randn_like(p))
    return {"identity": _save(ident, d / "identity.safetensors"), "random": _save(rand, d / "random.safetensors")}


def _step(path: Path | str, **kw) -> ModelStage:
    return ModelStage(ModelOptions(name=str(path), threads=1, precision="fp32", **kw))


def _rgb(h: int, w: int, seed: int = 0, noise: float = 0.03) -> Image:
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    base = 0.5 + 0.3 * np.sin(xx / 9.0)[..., None] * np.cos(yy / 13.0)[..., None] * np.array([1, 0.7, 0.4], np.float32)
    px = np.clip(base + rng.normal(0, noise, (h, w, 3)), 0, 1).astype(np.float32)
    return Image(px, SRGB, Metadata())


# ------------------------------------------------------------------------------------------- estimator


@pytest.mark.parametrize("sigma", [0.004, 0.02, 0.08])
def test_estimate_sigma_recovers_white_noise_on_a_smooth_image(sigma):
    img = _rgb(256, 384, seed=1).pixels * 0  # flat grey plus a gentle ramp: no texture
    yy, xx = np.mgrid[0:256, 0:384]
    clean = (0.3 + 0.4 * xx / 384 + 0.1 * yy / 256)[..., None] + img
    noisy = clean + np.random.default_rng(2).normal(0, sigma, clean.shape)
    assert estimate_sigma(noisy.astype(np.float32)) == pytest.approx(sigma, rel=0.05)
    assert estimate_sigma(clean.astype(np.float32)) < 1e-3  # a ramp has no diagonal detail


def test_estimate_sigma_subsamples_large_images_and_refuses_tiny_ones():
    rng = np.random.default_rng(3)
    big = (0.5 + rng.normal(0, 0.01, (4200, 4000))).astype(np.float32)  # 16.8 MP grey: subsampled
    assert estimate_sigma(big) == pytest.approx(0.01, rel=0.05)
    with pytest.raises(ValueError, match="at least 2x2"):
        estimate_sigma(np.zeros((1, 5, 3), np.float32))


def test_camera_noise_reads_monotonic_in_iso():
    """On developed camera noise (demosaiced, so correlated) the estimate rises with the ISO level."""
    from restore.noise import ISO_LEVELS

    clean = _rgb(128, 128, seed=4, noise=0.0).pixels
    mosaic, meta = U.unprocess(clean, np.random.default_rng(5), cfa_pattern="RGGB")
    levels = [estimate_sigma(U.process(U.add_noise(mosaic, a, b, np.random.default_rng(6)), meta))
              for a, b in ISO_LEVELS.values()]
    assert levels == sorted(levels) and levels[-1] > 4 * levels[0]


# ------------------------------------------------------------------------------------------- architecture


@pytest.mark.parametrize("kw", [{}, dict(base=6, depth=2), dict(channels=1, base=4, depth=1)])
def test_only_this_architecture_claims_its_weights(kw):
    sd = DenoiseUNet(**kw).state_dict()
    claims = [str(a.architecture.id) for a in spandrel.MAIN_REGISTRY.architectures("detection") if a.detect(sd)]
    assert claims == ["DenoiseUNet"]


def test_zero_last_layer_is_the_identity_and_sizes_are_checked():
    m = DenoiseUNet(base=4, depth=2)
    with torch.no_grad():
        m.body.tail.weight.zero_()
        m.body.tail.bias.zero_()
        x = torch.rand(2, 4, 16, 24)
        assert torch.equal(m(x), x[:, :3])
        with pytest.raises(ValueError, match="multiples of 8"):
            m(torch.rand(1, 4, 12, 16))


def test_noise_level_module_appends_a_constant_plane():
    x = torch.rand(1, 3, 4, 6)
    y = NoiseLevel(0.25)(x)
    assert y.shape == (1, 4, 4, 6) and torch.equal(y[:, :3], x) and torch.all(y[:, 3] == 0.25)
    with pytest.raises(ValueError):
        NoiseLevel(float("nan"))


# ------------------------------------------------------------------------------------------- model step


def test_identity_model_gives_back_the_image(models):
    img = _rgb(75, 101)
    out = _step(models["identity"], tile=0)(img, Context())
    assert out.encoding == img.encoding and np.array_equal(out.pixels, img.pixels)


def test_tiled_equals_whole_with_the_declared_tiling(models):
    img = _rgb(203, 181, seed=7)
    whole = _step(models["random"], tile=0)(img, Context()).pixels
    assert not np.allclose(whole, img.pixels, atol=1e-3)  # the network does something
    for tile in (96, 128):
        tiled = _step(models["random"], tile=tile)(img, Context()).pixels
        assert np.abs(tiled - whole).max() <= 1e-5, tile


def test_noise_level_is_estimated_from_the_whole_image_unless_set(models, monkeypatch):
    import restore.noise as noise_mod

    seen = []
    real = noise_mod.estimate_sigma
    monkeypatch.setattr(noise_mod, "estimate_sigma", lambda px: seen.append(px.shape) or real(px))
    img = _rgb(150, 170, seed=8)
    est = _step(models["random"], tile=64)(img, Context()).pixels
    assert seen == [(150, 170, 3)]  # once, on the whole image: every tile sees the same level
    step = _step(models["random"], tile=64, noise_sigma=real(img.pixels))
    assert np.array_equal(step(img, Context()).pixels, est) and len(seen) == 1  # the option skips the estimate
    louder = _step(models["random"], tile=64, noise_sigma=0.2)(img, Context()).pixels
    assert not np.allclose(louder, est)


def test_noise_sigma_out_of_range_is_a_pipeline_error(tmp_path):
    y = tmp_path / "p.yaml"
    y.write_text("version: 1\nsteps:\n  - model: {name: rgb-denoise, noise_sigma: 3}\n"
                 "  - write: {path: '{stem}.png'}\n")
    with pytest.raises(RestoreError, match="noise_sigma"):
        load_pipeline(y)


def test_export_backend_runs_the_network_with_each_images_own_noise_level(models):
    """A named ONNX runtime runs the network alone; the noise level is estimated per image in PyTorch and put in
    front of it, so one export serves images of different levels and each matches PyTorch."""
    step = _step(models["random"], tile=64, backend="onnxruntime")
    step.prepare()
    for img in (_rgb(96, 112, seed=1, noise=0.005), _rgb(96, 112, seed=2, noise=0.1)):
        ref = _step(models["random"], tile=64)(img, Context()).pixels
        assert np.abs(step(img, Context()).pixels - ref).max() <= 1e-4


# ------------------------------------------------------------------------------------------- shipped

NOT_SHIPPED = ("weights/rgb-denoise.safetensors not shipped (fails do-no-harm, weights/MANIFEST); train with "
               "python data_tools/train_denoise.py --task rgb-denoise")


@pytest.mark.skipif(not WEIGHTS.is_file(), reason=NOT_SHIPPED)
def test_shipped_weights_leave_a_clean_photo_and_remove_camera_noise(tmp_path):
    clean = read(EXAMPLE).pixels[:128, :192].astype(np.float32)
    mosaic, meta = U.unprocess(clean, np.random.default_rng(11), cfa_pattern="RGGB")
    ref = U.process(mosaic, meta)
    a, b = 1.6e-3, 1.6e-5  # ISO 12800 of restore.noise.ISO_LEVELS
    noisy = U.process(U.add_noise(mosaic, a, b, np.random.default_rng(12)), meta)

    def psnr(x, y):
        return 10 * math.log10(1.0 / float(np.mean((x.astype(np.float64) - y) ** 2)))

    step = _step("rgb-denoise", tile=0)
    out_clean = step(Image(ref, SRGB, Metadata()), Context()).pixels
    out_noisy = step(Image(noisy, SRGB, Metadata()), Context()).pixels
    assert psnr(out_clean, ref) >= 40.0  # a clean photo is left alone
    assert psnr(out_noisy, ref) >= psnr(noisy, ref) + 3.0


@pytest.mark.skipif(not WEIGHTS.is_file(), reason=NOT_SHIPPED)
def test_shipped_pipeline_runs_on_the_example(tmp_path):
    r = load_pipeline(ROOT / "pipelines" / "denoise.yaml").run([EXAMPLE], tmp_path)
    assert r.ok, r.results[0].error
    out = read(tmp_path / "chelsea_denoised.png")
    assert out.pixels.shape == read(EXAMPLE).pixels.shape


# ------------------------------------------------------------------------------------------- X-Trans route


def test_xtrans_route_develops_denoises_and_writes_a_linear_dng(models, tmp_path):
    """X-Trans has no CFA-domain model: ``raw-denoise-linear-dng.yaml`` develops it (LibRaw), runs the RGB
    denoiser and writes a LinearRaw DNG that rawpy opens; with an identity network the DNG holds the developed
    camera RGB (to 16-bit rounding).  The test develops with ``demosaic: linear``: LibRaw's X-Trans Markesteijn
    interpolation (``ahd`` and the other qualities) changed a band of ~10 rows between two runs of the same file
    here (up to 0.024), so exactness is checked on the deterministic interpolation."""
    import rawpy

    from restore.io.raw import RawOptions, read_raw
    from tests.test_dng import XTRANS, _synthetic_source

    src = _synthetic_source(EXAMPLE, XTRANS, tmp_path)
    y = tmp_path / "p.yaml"
    text = (ROOT / "pipelines" / "raw-denoise-linear-dng.yaml").read_text()
    text = text.replace("name: rgb-denoise,", f"name: '{models['identity']}',")
    assert "demosaic: ahd" in text
    y.write_text(text.replace("demosaic: ahd", "demosaic: linear"))
    r = load_pipeline(y).run([src], tmp_path / "out")
    assert r.ok, r.results[0].error
    out = tmp_path / "out" / f"{src.stem}_denoised.dng"
    with rawpy.imread(str(out)) as raw:
        assert raw.raw_image_visible.ndim == 3  # LinearRaw (LibRaw gives 4 samples, the 4th unused), not a mosaic
        got = raw.raw_image_visible[:, :, :3].astype(np.float64) / raw.white_level
    ref = read_raw(src, RawOptions(white_balance="camera", demosaic="linear", output="camera")).pixels
    assert got.shape == ref.shape and np.abs(got - np.clip(ref, 0, 1)).max() <= 1.0 / 65535 + 1e-6


def test_info_shows_the_noise_level_of_an_srgb_image():
    import json
    import subprocess

    res = subprocess.run([sys.executable, "-m", "restore.cli", "info", "--json", str(EXAMPLE)],
                         capture_output=True, text=True, timeout=120)
    assert res.returncode == 0, res.stderr
    (entry,) = json.loads(res.stdout)
    expected = estimate_sigma(read(EXAMPLE).pixels)
    assert entry["noise"]["sigma"] == pytest.approx(expected, abs=1e-6) and 0 < expected < 0.05


def test_bench_binds_side_inputs_computed_from_the_image(models, tmp_path):
    """``restore bench`` on the denoisers: the noise level (RGB) / sigma map (RAW, from an ISO 3200 profile) is
    bound from the synthetic image, as the model step binds it, instead of failing."""
    from restore.bench import bench_method
    from restore.models.archs.rawdenoise import RawDenoiseUNet

    raw = _save(RawDenoiseUNet(base=4, depth=2), tmp_path / "raw.safetensors")
    for path in (models["random"], raw):
        for method in ("whole", "tiled"):
            r = bench_method(str(path), method, 64, 48, 32, 8, 1, "fp32", "cpu")
            assert r["seconds"] > 0 and r["method"] == method, (path, r)
    # and through an ONNX runtime: the network alone, the side input in front of it
    r = bench_method(str(raw), "tiled", 64, 48, 32, 8, 1, "fp32", "cpu", "onnxruntime")
    assert r["seconds"] > 0 and r["backend"] == "onnxruntime", r
