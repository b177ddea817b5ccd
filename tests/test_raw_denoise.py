"""The RAW denoiser's inference side (issue 19): Bayer packing, the sigma-map side input, the model step on CFA
mosaics (refusals, identity, tiling, blend), developing a denoised mosaic, and the shipped pipelines."""

from __future__ import annotations

import subprocess
import sys
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import rawpy
import spandrel
import torch
from safetensors.torch import save_file

from restore.errors import InputError, RestoreError
from restore.image import CFA_MOSAIC, LINEAR_REC709, Image, Metadata
from restore.io import read, read_mosaic
from restore.models import cfa
from restore.models.archs.rawdenoise import RawDenoiseUNet, receptive_field, tile_context
from restore.noise import NoiseProfile
from restore.pipeline import load_pipeline
from restore.pipeline.base import Context
from restore.pipeline.steps.model import ModelOptions, ModelStage

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
from data_tools import unprocess as U  # noqa: E402

DNG = ROOT / "examples" / "coffee_raw.dng"
WEIGHTS = ROOT / "weights" / "raw-denoise.safetensors"
PATTERNS = ("RGGB", "BGGR", "GRBG", "GBRG")
PROFILE = NoiseProfile(a=2e-3, b=4e-6, source="pipeline")


def _save(model: torch.nn.Module, path: Path) -> Path:
    save_file({k: v.contiguous() for k, v in model.state_dict().items()}, str(path))
    return path


@pytest.fixture(scope="module")
def models(tmp_path_factory) -> dict[str, Path]:
    """Tiny checkpoints: ``identity`` (last layer zero), ``random`` (every weight random)."""
    d = tmp_path_factory.mktemp("rawdenoise")
    torch.manual_seed(0)
    ident = RawDenoiseUNet(base=4, depth=3, sigma_channels=4)
    with torch.no_grad():
        ident.tail.weight.zero_()
        ident.tail.bias.zero_()
    rand = RawDenoiseUNet(base=4, depth=3, sigma_channels=4)
    with torch.no_grad():
        for p in rand.parameters():
            p.add_(0.05 * torch.randn_like(p))
    blocks = RawDenoiseUNet(base=4, depth=3, sigma_channels=4, blocks=(2, 1, 0))
    with torch.no_grad():
        for p in blocks.parameters():
            p.add_(0.05 * torch.randn_like(p))
    return {"identity": _save(ident, d / "identity.safetensors"), "random": _save(rand, d / "random.safetensors"),
            "blocks": _save(blocks, d / "blocks.safetensors")}


def _mosaic_crop() -> Image:
    """The shipped DNG's mosaic, cropped at even offsets (pattern kept) to odd sides."""
    m = read_mosaic(DNG)
    return replace(m, pixels=np.ascontiguousarray(m.pixels[10:101, 20:163]))


def _random_cfa(h: int, w: int, pattern: str = "GRBG", seed: int = 0) -> Image:
    px = np.random.default_rng(seed).random((h, w, 1), dtype=np.float32) * 1.1 - 0.05
    return Image(px, CFA_MOSAIC, Metadata(cfa_pattern=pattern, noise_profile=PROFILE))


def _step(path: Path | str, **kw) -> ModelStage:
    return ModelStage(ModelOptions(name=str(path), threads=1, precision="fp32", **kw))


# ------------------------------------------------------------------------------------------- packing


@pytest.mark.parametrize("pattern", PATTERNS)
@pytest.mark.parametrize("shape", [(8, 10), (9, 7)])
def test_packing_round_trip_and_plane_colours(pattern, shape):
    rng = np.random.default_rng(1)
    m = rng.random(shape, dtype=np.float32)
    planes = cfa.pack(m, pattern)
    assert planes.shape == (-(-shape[0] // 2), -(-shape[1] // 2), 4) and planes.dtype == np.float32
    assert np.array_equal(cfa.unpack(planes, pattern, shape)[:, :, 0], m)
    # R, G1 (red's row), G2 (blue's row), B; the same order as the training data (data_tools.unprocess)
    red_row = pattern.index("R") // 2
    cell = [[{"R": 0, "B": 3}.get(pattern[2 * i + j], 1 if i == red_row else 2) for j in range(2)] for i in range(2)]
    code = np.tile(np.array(cell, np.float32), (shape[0] // 2 + 1, shape[1] // 2 + 1))[: shape[0], : shape[1]]
    packed_code = cfa.pack(code, pattern)
    for k in range(4):
        assert np.all(packed_code[:, :, k] == k), (pattern, k)
    even = m[: shape[0] // 2 * 2, : shape[1] // 2 * 2]
    assert np.array_equal(cfa.pack(even, pattern), np.moveaxis(U.pack_bayer(even, pattern), 0, 2))


def test_xtrans_and_unknown_patterns_are_refused_in_one_line():
    m = np.zeros((12, 12), np.float32)
    with pytest.raises(RestoreError, match="X-Trans") as e:
        cfa.pack(m, "GGRGGB" * 6)
    assert "\n" not in str(e.value)
    with pytest.raises(RestoreError, match="Bayer"):
        cfa.pack(m, "RGBG")


def test_sigma_map_matches_the_training_conditioning():
    rng = np.random.default_rng(2)
    planes = (rng.random((4, 6, 8), dtype=np.float32) - 0.1)
    for ch in (4, 1):
        got = cfa.SigmaMap(PROFILE.a, PROFILE.b, ch)(torch.from_numpy(planes)[None])[0]
        assert torch.equal(got[:4], torch.from_numpy(planes))
        assert np.allclose(got[4:].numpy(), U.sigma_map(planes, PROFILE.a, PROFILE.b, ch), atol=1e-7)


# ------------------------------------------------------------------------------------------- architecture


def test_receptive_field_and_tile_context():
    torch.manual_seed(0)
    m = RawDenoiseUNet(base=4, depth=3).eval()
    x = torch.rand(1, 8, 160, 160, requires_grad=True)
    m(x)[0, :, 80, 80].sum().backward()
    idx = (x.grad.abs().sum((0, 1)) > 0).nonzero()
    reach = max(80 - int(idx.min()), int(idx.max()) - 80)
    assert int(idx.max()) - int(idx.min()) + 1 <= receptive_field(3) == 72
    assert reach <= tile_context(3) == 40 and tile_context(3) % 8 == 0


@pytest.mark.parametrize("depth,blocks", [(3, ()), (3, (1, 0, 0)), (3, (0, 1, 0)), (3, (2, 2, 0)), (3, (1, 0, 3)),
                                          (2, (0, 1)), (4, ())])
def test_measured_reach_stays_inside_the_tile_context(depth, blocks):
    """By gradient, at every phase of the 2**depth grid: no output pixel sees farther than ``tile_context``."""
    torch.manual_seed(0)
    m = RawDenoiseUNet(base=2, depth=depth, blocks=blocks)
    with torch.no_grad():
        for p in m.parameters():
            p.normal_(0, 0.3)
    reach = 0
    for c in range(96, 96 + 2**depth):
        x = torch.rand(1, 8, 208, 208, requires_grad=True)
        m(x)[0, :, c, c].sum().backward()
        idx = (x.grad.abs().sum((0, 1)) > 0).nonzero()
        reach = max(reach, c - int(idx.min()), int(idx.max()) - c)
    assert reach <= tile_context(depth, blocks) and tile_context(depth, blocks) % 2**depth == 0
    assert reach > tile_context(depth, blocks) - 2**depth - 8  # tight: not a blanket over-estimate


def test_residual_blocks_load_from_their_shapes_and_start_as_the_identity():
    from safetensors.torch import load_file  # noqa: F401

    from restore.models.archs.rawdenoise import infer_params

    plain = RawDenoiseUNet(base=4, depth=3)
    grown = RawDenoiseUNet(base=4, depth=3, blocks=(2, 2))
    res = grown.load_state_dict(plain.state_dict(), strict=False)
    assert res.unexpected_keys == [] and all(".body." in k for k in res.missing_keys)
    x = torch.rand(1, 8, 32, 32)
    with torch.no_grad():
        assert torch.equal(grown(x), plain(x))  # new blocks are the identity until trained
    assert infer_params(grown.state_dict())["blocks"] == (2, 2, 0)
    assert "blocks" not in infer_params(plain.state_dict())
    with pytest.raises(ValueError, match="blocks"):
        RawDenoiseUNet(depth=2, blocks=(1, 1, 1))
    from restore.models.archs.rgbdenoise import DenoiseUNet, infer_params as rgb_params

    rgb = DenoiseUNet(base=4, depth=2, blocks=(1,))
    p = rgb_params(rgb.state_dict())
    assert p["blocks"] == (1, 0)
    DenoiseUNet(**p).load_state_dict(rgb.state_dict())  # strict


@pytest.mark.parametrize("kw", [{}, dict(base=6, depth=2, sigma_channels=1), dict(base=4, depth=4, sigma_channels=0),
                                dict(base=4, depth=3, blocks=(1, 2, 0))])
def test_only_this_architecture_claims_its_weights_in_the_whole_registry(kw):
    """No golden fixture (restore's own architecture), so the contract's registry check is done here."""
    sd = RawDenoiseUNet(**kw).state_dict()
    claims = [str(a.architecture.id) for a in spandrel.MAIN_REGISTRY.architectures("detection") if a.detect(sd)]
    assert claims == ["RawDenoiseUNet"]


def test_zero_last_layer_is_the_identity():
    m = RawDenoiseUNet(base=4, depth=2)
    with torch.no_grad():
        m.tail.weight.zero_()
        m.tail.bias.zero_()
        x = torch.randn(2, 8, 16, 24)
        assert torch.equal(m(x), x[:, :4])


# ------------------------------------------------------------------------------------------- model step


def test_identity_model_gives_back_the_mosaic(models):
    img = _mosaic_crop()
    assert img.meta.cfa_pattern == "RGGB" and img.height % 2 and img.width % 2
    out = _step(models["identity"], tile=0)(img, Context())
    assert out.encoding == img.encoding and out.encoding.cfa and out.meta is img.meta
    assert np.array_equal(out.pixels, img.pixels)
    tiled = _step(models["identity"], tile=24)(img, Context())
    assert np.allclose(tiled.pixels, img.pixels, atol=1e-6, rtol=0)
    assert img.meta.noise_profile is not None  # estimated from the RAW file for the sigma map


@pytest.mark.parametrize("which", ["random", "blocks"])
def test_tiled_equals_whole_with_the_declared_tiling(models, which):
    """The context comes from the loaded checkpoint's layout (``ArchInfo.context_of``): 40 packed px for the
    plain U-Net, more with residual blocks; tiles then equal the whole image."""
    img = _random_cfa(301, 262, "BGGR")
    step = _step(models[which], tile=0)
    whole = step(img, Context()).pixels
    assert not np.allclose(whole, img.pixels, atol=1e-3)  # the network does something
    assert step.model.info.context == (40 if which == "random" else tile_context(3, (2, 1, 0))) > 0
    for tile in (48, 64, 100):
        tiled = _step(models[which], tile=tile)(img, Context()).pixels
        assert np.abs(tiled - whole).max() <= 1e-5, tile


def test_noise_profile_feeds_the_sigma_map(models):
    img = _random_cfa(64, 64)
    a = _step(models["random"], tile=0)(img, Context()).pixels
    louder = replace(img, meta=replace(img.meta, noise_profile=NoiseProfile(a=2e-2, b=4e-4)))
    b = _step(models["random"], tile=0)(louder, Context()).pixels
    assert not np.allclose(a, b)


@pytest.mark.parametrize("backend", ["onnxruntime", "auto"])
def test_export_backends_run_the_network_with_each_images_own_sigma_map(models, backend):
    """An ONNX runtime runs the network alone, once exported for the tile shape; the sigma map is computed per
    image in PyTorch in front of it.  Two files of different noise profiles through one step then each match
    PyTorch: the first file's profile is not baked into the export (issue 19's speed path)."""
    quiet = _random_cfa(200, 232, "RGGB", seed=3)
    loud = replace(_random_cfa(200, 232, "RGGB", seed=4), meta=replace(quiet.meta, noise_profile=NoiseProfile(a=2e-2, b=4e-4)))
    step = _step(models["random"], tile=48, backend=backend)
    for img in (quiet, loud, quiet):
        ref = _step(models["random"], tile=48)(img, Context()).pixels
        assert np.abs(step(img, Context()).pixels - ref).max() <= 1e-4
    if backend == "onnxruntime":  # the tiles' input windows have one shape: one export and session for the run
        assert [len(f._runs) for f, _ in step.run_state.backend_forward.values()] == [1]
    with_quiet = replace(loud, meta=quiet.meta)  # the same pixels under the other profile: the map matters here
    assert not np.allclose(step(with_quiet, Context()).pixels, step(loud, Context()).pixels, atol=1e-3)


def test_blend_mixes_in_the_packed_domain(models):
    img = _random_cfa(40, 56, "GBRG")
    full = _step(models["random"], tile=0)(img, Context()).pixels
    half = _step(models["random"], tile=0, blend=0.5)(img, Context()).pixels
    none = _step(models["random"], tile=0, blend=0.0)(img, Context()).pixels
    assert np.array_equal(none, img.pixels)
    assert np.allclose(half, 0.5 * full + 0.5 * img.pixels, atol=1e-6)


def test_rgb_to_the_cfa_model_is_refused_in_one_line(models):
    rgb = Image(np.full((16, 16, 3), 0.5, np.float32), LINEAR_REC709, Metadata())
    with pytest.raises(RestoreError, match="takes a raw CFA mosaic") as e:
        _step(models["identity"], tile=0)(rgb, Context())
    assert "\n" not in str(e.value) and str(models["identity"]) in str(e.value)


def test_cfa_to_an_rgb_model_is_refused_in_one_line():
    with pytest.raises(RestoreError, match="takes RGB") as e:
        _step("dat-light-x2", tile=0)(_random_cfa(16, 16), Context())
    assert "\n" not in str(e.value) and "dat-light-x2" in str(e.value)


def test_xtrans_mosaic_is_refused_in_one_line(models):
    img = _random_cfa(24, 24, "GGRGGB" * 6)
    with pytest.raises(RestoreError, match="X-Trans") as e:
        _step(models["identity"], tile=0)(img, Context())
    assert "\n" not in str(e.value)


def test_a_mosaic_without_noise_profile_is_a_one_line_failure(models):
    img = replace(_random_cfa(16, 16), meta=Metadata(cfa_pattern="RGGB"))
    with pytest.raises(InputError, match="noise profile") as e:
        _step(models["identity"], tile=0)(img, Context())
    assert "\n" not in str(e.value)


# ------------------------------------------------------------------------------------------- pipelines


def _pipeline_with(path: Path, name: Path, tmp_path: Path) -> Path:
    y = tmp_path / path.name
    y.write_text(path.read_text().replace("name: raw-denoise,", f"name: '{name}',"))
    return y


def test_dng_pipeline_from_the_cli_writes_a_dng_rawpy_opens(models, tmp_path):
    y = _pipeline_with(ROOT / "pipelines" / "raw-denoise-dng.yaml", models["identity"], tmp_path)
    res = subprocess.run([sys.executable, "-m", "restore.cli", "run", str(y), str(DNG), "-o", str(tmp_path / "out")],
                         capture_output=True, text=True, timeout=300)
    assert res.returncode == 0, res.stderr
    out = tmp_path / "out" / "coffee_raw_denoised.dng"
    with rawpy.imread(str(DNG)) as a, rawpy.imread(str(out)) as b:  # identity model: the mosaic comes back exactly
        assert np.array_equal(a.raw_image_visible, b.raw_image_visible)
        assert a.raw_pattern.tolist() == b.raw_pattern.tolist()


def test_exr_pipeline_develops_the_denoised_mosaic_as_raw_to_exr(models, tmp_path):
    y = _pipeline_with(ROOT / "pipelines" / "raw-denoise-exr.yaml", models["identity"], tmp_path)
    r = load_pipeline(y).run([DNG], tmp_path / "out")
    assert r.ok, r.results[0].error
    r2 = load_pipeline(ROOT / "pipelines" / "raw-to-exr.yaml").run([DNG], tmp_path / "ref")
    assert r2.ok
    got, ref = read(tmp_path / "out" / "coffee_raw_denoised.exr"), read(tmp_path / "ref" / "coffee_raw.exr")
    assert got.pixels.shape == ref.pixels.shape
    assert np.abs(got.pixels - ref.pixels).max() <= 1e-6


@pytest.mark.skipif(not WEIGHTS.is_file(), reason="weights/raw-denoise.safetensors not trained yet "
                    "(python data_tools/train_denoise.py --task raw-denoise); the shipped pipelines name catalogue entry raw-denoise")
def test_shipped_weights_denoise_the_example_dng(tmp_path):
    r = load_pipeline(ROOT / "pipelines" / "raw-denoise-dng.yaml").run([DNG], tmp_path)
    assert r.ok, r.results[0].error
    with rawpy.imread(str(DNG)) as a, rawpy.imread(str(tmp_path / "coffee_raw_denoised.dng")) as b:
        x, y = a.raw_image_visible.astype(np.float64), b.raw_image_visible.astype(np.float64)
    assert x.shape == y.shape and not np.array_equal(x, y)
    assert np.abs(x - y).mean() < 0.05 * (x.max() - x.min())  # denoised, not replaced
    # the file's own noise estimate (Foi et al. fit) falls: sigma at 10 % of white at least halves
    from restore.noise import noise_profile_for

    before, after = noise_profile_for(DNG), noise_profile_for(tmp_path / "coffee_raw_denoised.dng")
    assert after.a * 0.1 + after.b < (before.a * 0.1 + before.b) / 4, (before, after)


def test_training_losses_weigh_every_noise_level_alike():
    """data_tools/train_denoise.py losses: ``l1-sigma`` and ``l1-sigma+nmse`` give an error of one noise sigma the
    same weight at every level (the patch's PSNR gain), ``l1`` does not; a perfect output costs nothing."""
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
    from data_tools.train_denoise import loss_fn

    y = torch.full((2, 4, 8, 8), 0.3)
    sig = torch.cat([torch.full((1, 4, 8, 8), 1e-3), torch.full((1, 4, 8, 8), 1e-2)])  # ISO ~800 and ~51200
    x = torch.cat([y, sig], 1)
    out = y + sig  # one sigma of error on each patch
    assert loss_fn("l1-sigma", y, x, y) == 0 and loss_fn("l1-sigma+nmse", y, x, y) == 0
    per_patch = [float(loss_fn(k, out[i:i + 1], x[i:i + 1], y[i:i + 1])) for k in ("l1-sigma+nmse",) for i in (0, 1)]
    assert per_patch == pytest.approx([2.0, 2.0], rel=1e-3)  # l1/sigma 1 + mse/var 1, on both patches
    assert float(loss_fn("l1", out[:1], x[:1], y[:1])) < float(loss_fn("l1", out[1:], x[1:], y[1:])) / 5


def test_training_can_grow_trained_weights_by_residual_blocks(tmp_path):
    """``train_denoise.py --blocks 2,2,0 --init W``: the plain U-Net's weights load, the new blocks start as the
    identity (same output as the weights it grew from); weights of another layout are refused in one line."""
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
    from data_tools.train_denoise import build_model, init_from

    plain = RawDenoiseUNet(base=32, depth=3)
    with torch.no_grad():
        for p in plain.parameters():
            p.add_(0.02 * torch.randn_like(p))
    w = _save(plain, tmp_path / "plain.safetensors")
    grown = build_model("raw-denoise", (2, 2, 0))
    new = init_from(grown, w)
    assert new and all(".body." in k for k in new)
    x = torch.rand(1, 8, 32, 32)
    with torch.no_grad():
        assert torch.equal(grown(x), plain(x))
    with pytest.raises(SystemExit, match="do not fit"):
        init_from(build_model("raw-denoise"), _save(RawDenoiseUNet(base=16, depth=3), tmp_path / "other.safetensors"))


def test_raw_training_pairs_can_keep_scene_grain_in_the_target():
    """``train_denoise.py --task raw-denoise --grain-fraction F``: a share F of the crops get scene grain before
    unprocessing, in the clean target as in the noisy input; at 0 the pairs and the random stream are the ones the
    shipped recipe drew (no extra draw)."""
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
    from data_tools.train_denoise import make_pair

    flat = np.full((64, 64, 3), 0.4, np.float32)
    plain = [np.random.default_rng(5) for _ in range(2)]
    x0, y0 = make_pair(flat, plain[0], 16)
    x1, y1 = make_pair(flat, plain[1], 16, grain_fraction=0.0)
    assert np.array_equal(x0, x1) and np.array_equal(y0, y1) and plain[0].random() == plain[1].random()
    _, grainy = make_pair(flat, np.random.default_rng(5), 16, grain_fraction=1.0)
    texture = lambda planes: float(np.abs(np.diff(planes, axis=-1)).mean())  # noqa: E731
    assert texture(y0) < 1e-6 < 1e-4 < texture(grainy), (texture(y0), texture(grainy))
