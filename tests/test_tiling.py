import numpy as np
import pytest
import torch

from restore.tiling import TileSpec, blend_ramp, plan_axis, resolve_precision, run_tiled


@pytest.mark.parametrize("length,tile,overlap", [(100, 32, 8), (33, 32, 8), (32, 32, 0), (7, 32, 8), (257, 64, 16)])
def test_plan_axis_covers_every_pixel_within_bounds(length, tile, overlap):
    starts = plan_axis(length, tile, overlap)
    covered = np.zeros(length, bool)
    for s in starts:
        covered[s : s + tile] = True
        assert s >= 0 and (s + tile <= length or len(starts) == 1)
    assert covered.all()
    assert all(b - a <= tile - overlap for a, b in zip(starts, starts[1:]))


def test_plan_axis_rejects_bad_overlap():
    with pytest.raises(ValueError):
        plan_axis(100, 16, 16)


def test_blend_ramps_are_complementary():
    r = blend_ramp(13)
    assert np.allclose(r + r[::-1], 1.0, atol=1e-6)
    assert np.all(np.diff(r) > 0) and r[0] > 0


class LocalNet(torch.nn.Module):
    """Receptive field 7 px (three 3x3 convs) then x`scale` pixel shuffle."""

    def __init__(self, scale=1, cin=3):
        super().__init__()
        torch.manual_seed(0)
        self.scale = scale
        self.body = torch.nn.Sequential(
            torch.nn.Conv2d(cin, 8, 3, padding=1), torch.nn.GELU(),
            torch.nn.Conv2d(8, 8, 3, padding=1), torch.nn.GELU(),
            torch.nn.Conv2d(8, 3 * scale * scale, 3, padding=1),
        )

    def forward(self, x):
        return torch.nn.functional.pixel_shuffle(self.body(x), self.scale)


@pytest.mark.parametrize("scale", [1, 2, 3])
def test_tiled_matches_whole_image_when_overlap_exceeds_receptive_field(scale, rng):
    img = rng.random((3, 45, 61), dtype=np.float32)
    net = LocalNet(scale)
    whole = run_tiled(net, img, scale=scale, spec=TileSpec(tile=0))
    tiled = run_tiled(net, img, scale=scale, spec=TileSpec(tile=28, overlap=12, batch=3))
    assert tiled.shape == (3, 45 * scale, 61 * scale)
    # receptive-field radius 3 <= overlap / 4: tile edges never contribute, so tiling is exact
    assert np.abs(tiled - whole).max() < 1e-5


def test_blending_hides_seams_for_a_context_hungry_model(rng):
    # a model whose output depends on the tile mean: seams would be visible without blending
    img = rng.random((3, 64, 64), dtype=np.float32)
    net = lambda x: x + x.mean(dim=(2, 3), keepdim=True)  # noqa: E731
    out = run_tiled(net, img, scale=1, spec=TileSpec(tile=32, overlap=16))
    jump = np.abs(np.diff(out - img, axis=2)).max()  # the added mean varies smoothly
    assert jump < 0.02


def test_size_requirements_and_single_tile_is_whole_image(rng):
    img = rng.random((3, 13, 21), dtype=np.float32)
    seen = []

    def net(x):
        seen.append(tuple(x.shape[-2:]))
        return x * 2

    out = run_tiled(net, img, scale=1, spec=TileSpec(tile=0), multiple_of=8, min_size=16)
    assert seen == [(16, 24)] and out.shape == img.shape and np.allclose(out, img * 2)


def test_batching_gives_identical_results(rng):
    img = rng.random((3, 50, 50), dtype=np.float32)
    net = LocalNet(2)
    a = run_tiled(net, img, scale=2, spec=TileSpec(tile=20, overlap=6, batch=1))
    b = run_tiled(net, img, scale=2, spec=TileSpec(tile=20, overlap=6, batch=7))
    assert np.allclose(a, b, atol=1e-6)


def test_progress_reports_every_tile(rng):
    calls = []
    run_tiled(lambda x: x, rng.random((1, 40, 40), dtype=np.float32), scale=1, spec=TileSpec(16, 4, 2), progress=lambda d, t: calls.append((d, t)))
    assert calls[-1][0] == calls[-1][1] == 9
    assert calls[0] == (0, 9)  # the real tile count before the first tile runs (progress bars show it from the start)
    assert all(t == 9 for _, t in calls) and [d for d, _ in calls] == sorted(d for d, _ in calls)


def test_precision_rules():
    cpu = torch.device("cpu")
    assert resolve_precision("auto", cpu, True, True) == torch.float32
    assert resolve_precision("bf16", cpu, False, True) == torch.bfloat16
    with pytest.raises(ValueError):
        resolve_precision("fp16", cpu, True, True)
    with pytest.raises(ValueError):
        resolve_precision("bf16", cpu, True, False)


def test_cpu_auto_precision_uses_bf16_only_for_verified_architectures(monkeypatch):
    """bf16 on CPU needs the descriptor's measured verdict (``cpu_bf16_ok``) AND native bf16."""
    from restore import tiling
    from restore.models.archs import info_for

    cpu = torch.device("cpu")
    monkeypatch.setattr(tiling, "cpu_has_fast_bf16", lambda: True)
    assert info_for("DAT").cpu_bf16_ok and not info_for("HAT").cpu_bf16_ok
    assert tiling.resolve_precision("auto", cpu, False, True, cpu_bf16_ok=True) == torch.bfloat16
    assert tiling.resolve_precision("auto", cpu, False, True, cpu_bf16_ok=False) == torch.float32
    assert tiling.resolve_precision("auto", cpu, False, True) == torch.float32  # unverified by default
    assert tiling.resolve_precision("auto", cpu, False, False, cpu_bf16_ok=True) == torch.float32
    monkeypatch.setattr(tiling, "cpu_has_fast_bf16", lambda: False)
    assert tiling.resolve_precision("auto", cpu, False, True, cpu_bf16_ok=True) == torch.float32


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_cuda_tiles_and_auto_precision(rng):
    img = rng.random((3, 40, 40), dtype=np.float32)
    net = LocalNet(2).cuda()
    dt = resolve_precision("auto", torch.device("cuda"), True, True)
    out = run_tiled(net, img, scale=2, spec=TileSpec(16, 4), device="cuda", dtype=dt)
    ref = run_tiled(LocalNet(2), img, scale=2, spec=TileSpec(16, 4))
    assert np.abs(out - ref).max() < 0.05


def test_hwc_layout_equals_chw(rng):
    img = rng.random((3, 37, 45), dtype=np.float32)
    net = LocalNet(2)
    a = run_tiled(net, img, scale=2, spec=TileSpec(16, 6, 2))
    b = run_tiled(net, np.ascontiguousarray(img.transpose(1, 2, 0)), scale=2, spec=TileSpec(16, 6, 2), layout="hwc")
    assert b.shape == (74, 90, 3) and np.array_equal(a, b.transpose(2, 0, 1))


def test_out_of_memory_halves_the_tile_and_retries(rng):
    img = rng.random((3, 64, 64), dtype=np.float32)
    seen, halved = [], []

    def fussy(x):
        seen.append(x.shape[-1])
        if x.shape[-1] > 16:
            raise RuntimeError("CUDA out of memory. Tried to allocate 2.00 GiB")
        return x * 2

    from restore.models import fused_attention

    fused_attention._cached_mask(("test", 1), lambda: torch.zeros(4))
    out = run_tiled(fussy, img, scale=1, spec=TileSpec(64, 8), on_oom=lambda a, b: halved.append((a, b)))
    assert halved == [(64, 32), (32, 16)] and np.allclose(out, img * 2)
    assert not fused_attention._masks and fused_attention._mask_bytes == 0  # masks of the failed size dropped
    with pytest.raises(ValueError):  # other errors are not swallowed
        run_tiled(lambda x: (_ for _ in ()).throw(ValueError("bug")), img, scale=1, spec=TileSpec(32, 8))


def test_working_memory_is_one_band_not_the_whole_output(rng):
    """Peak allocation beyond input and output stays near one band of tiles, whatever the height."""
    import tracemalloc

    def extra_peak(h):
        img = np.zeros((h, 256, 3), np.float32)
        out = np.empty((2 * h, 512, 3), np.float32)
        tracemalloc.start()
        run_tiled(lambda x: torch.nn.functional.interpolate(x, scale_factor=2), img, scale=2, spec=TileSpec(32, 8), layout="hwc", out=out)
        peak = tracemalloc.get_traced_memory()[1]
        tracemalloc.stop()
        return peak

    small, tall = extra_peak(128), extra_peak(1024)
    out_tall = 2 * 1024 * 512 * 3 * 4
    assert tall < small * 1.5 + 1e6 and tall < out_tall / 4, (small, tall)


def test_context_border_makes_a_wide_receptive_field_exact(rng):
    """Receptive field 7 px with a small overlap: exact only when each tile gets >= 7 px of context."""
    torch.manual_seed(0)
    net = torch.nn.Sequential(*[torch.nn.Conv2d(3, 3, 3, padding=1) for _ in range(7)])
    img = rng.random((3, 50, 70), dtype=np.float32)
    whole = run_tiled(net, img, scale=1, spec=TileSpec(tile=0))
    no_ctx = run_tiled(net, img, scale=1, spec=TileSpec(tile=24, overlap=4))
    ctx = run_tiled(net, img, scale=1, spec=TileSpec(tile=24, overlap=4, context=8, batch=4))
    assert np.abs(no_ctx - whole).max() > 1e-3
    assert np.abs(ctx - whole).max() < 1e-5


@pytest.mark.parametrize("hw,tile,context,mult", [((50, 70), 24, 8, 1), ((61, 97), 16, 8, 8), ((40, 40), 24, 12, 4)])
def test_uniform_windows_have_one_shape_and_stay_exact(rng, hw, tile, context, mult):
    """``uniform``: border windows are shifted inside the canvas, not clipped, so every call sees one shape (one
    compiled graph, one ONNX export and session per run); the output still equals the whole image's, as the
    clipped windows' does."""
    torch.manual_seed(1)
    net = torch.nn.Sequential(*[torch.nn.Conv2d(3, 3, 3, padding=1) for _ in range(7)])
    shapes = set()

    def forward(x):
        shapes.add(tuple(x.shape[2:]))
        return net(x)

    img = rng.random((3, *hw), dtype=np.float32)
    whole = run_tiled(net, img, scale=1, spec=TileSpec(tile=0), multiple_of=mult)
    tiled = run_tiled(forward, img, scale=1, spec=TileSpec(tile=tile, overlap=4, context=context, uniform=True),
                      multiple_of=mult)
    assert len(shapes) == 1, shapes
    assert np.abs(tiled - whole).max() < 1e-5
    shapes.clear()
    clipped = run_tiled(forward, img, scale=1, spec=TileSpec(tile=tile, overlap=4, context=context), multiple_of=mult)
    assert np.abs(clipped - whole).max() < 1e-5 and len(shapes) >= 1


def test_balanced_tiles_keep_the_count_and_compute_fewer_pixels():
    from restore.tiling import balanced_tile

    for length, tile, overlap, mult in [(512, 128, 16, 1), (512, 128, 16, 8), (1000, 256, 32, 16), (4000, 512, 32, 1), (300, 96, 8, 4)]:
        t = balanced_tile(length, tile, overlap, mult)
        n_old, n_new = len(plan_axis(length, tile, overlap)), len(plan_axis(length, t, overlap))
        assert t <= tile and t % mult == 0 and n_new == n_old, (length, tile, t)
        assert n_new * t <= n_old * tile
        starts = plan_axis(length, t, overlap)
        assert starts[0] == 0 and starts[-1] + t == length  # still covers the axis exactly
    assert balanced_tile(512, 128, 16) == 116  # 5 tiles either way; 1.28x instead of 1.56x the pixels
    assert balanced_tile(100, 128, 16) == 128  # one tile covers it: unchanged


def test_balanced_tiles_respect_the_models_internal_window():
    """A model that pads to 32 internally (DAT) keeps 128-px tiles: 116 px would run as 128 anyway,
    with reflected padding where real neighbours were."""
    from restore.tiling import balanced_tile

    assert balanced_tile(512, 128, 16, 32) == 128
    seen = []

    def fwd(x):
        seen.append(tuple(x.shape[-2:]))
        return x

    img = np.random.default_rng(0).random((3, 512, 512)).astype(np.float32)
    run_tiled(fwd, img, scale=1, spec=TileSpec(128, 16, align=32))
    assert set(seen) == {(128, 128)}
    seen.clear()
    run_tiled(fwd, img, scale=1, spec=TileSpec(128, 16))
    assert set(seen) == {(116, 116)}
