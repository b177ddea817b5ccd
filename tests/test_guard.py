"""The do-no-harm guard (issue 20): the guard network, its strips, its catalogue entry and the model step."""

import hashlib
import importlib
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from restore.guard import HALO, GuardNet, apply_guard, guard_weights, load_guard, save_guard  # noqa: E402
from restore.image import SRGB, Image, Metadata  # noqa: E402
from restore.pipeline.base import Context  # noqa: E402
from restore.pipeline.steps.model import ModelOptions, ModelStage  # noqa: E402

cat = importlib.import_module("restore.models.catalog")  # the module (restore.models.catalog is also a function)


def _net(seed=0, bias=None, global_context=False, frame_weight=False):
    torch.manual_seed(seed)
    net = GuardNet(8, global_context, frame_weight).eval()
    with torch.no_grad():
        if bias is not None:
            net.out.bias.fill_(bias)
        if frame_weight:  # a whole-image weight that matters (it starts near 0) and depends on the image
            net.frame.bias.fill_(0.0)
            net.frame.weight.normal_(0.0, 1.0)
    return net


#: The guard's forms: (global_context, frame_weight).
FORMS = [(False, False), (True, False), (True, True)]


def _pair(h, w, seed=0):
    rng = np.random.default_rng(seed)
    x = rng.random((h, w, 3)).astype(np.float32)
    return x, np.clip(x + rng.normal(0, 0.1, x.shape), 0, 1).astype(np.float32)


@pytest.mark.parametrize("global_context, frame_weight", FORMS)
@pytest.mark.parametrize("h, w", [(150, 41), (97, 64)])
def test_tiles_give_the_whole_image_result(h, w, global_context, frame_weight):
    """Odd sizes and tiles far smaller than the image: identical to one pass (the halo covers the receptive field;
    the whole-image context, and the whole-image weight made from it, are summed over the tiles' own pixels)."""
    net = _net(global_context=global_context, frame_weight=frame_weight)
    x, y = _pair(h, w)
    whole = guard_weights(net, x, y, tile=10_000)
    assert whole.shape == (h, w, 1) and whole.dtype == np.float32
    xt, yt = (torch.from_numpy(np.pad(a, ((0, h % 2), (0, w % 2), (0, 0)), mode="edge")).permute(2, 0, 1)[None]
              for a in (x, y))
    with torch.no_grad():  # the plain forward over the whole (even-padded) image
        np.testing.assert_allclose(whole[:, :, 0], net(xt, yt)[0, 0, :h, :w].numpy(), atol=1e-6)
    for tile in (8, 30, 64):
        np.testing.assert_allclose(guard_weights(net, x, y, tile=tile), whole, atol=1e-6)
        out, mean_w = apply_guard(net, x, y, tile=tile)  # mixed tile by tile: the same as mixing the whole
        np.testing.assert_allclose(out, x + whole * (y - x), atol=1e-6)
        assert mean_w == pytest.approx(float(whole.mean()), abs=1e-6)


def test_halo_covers_the_receptive_field():
    net = _net(1)
    x, y = _pair(2 * HALO + 41, 24)
    base = guard_weights(net, x, y)
    r = HALO + 20
    y2 = y.copy()
    y2[r] = 1.0 - y2[r]
    rows = np.nonzero(np.abs(guard_weights(net, x, y2) - base).max(axis=(1, 2)) > 0)[0]
    assert rows.size and rows.min() >= r - HALO and rows.max() <= r + HALO


def test_guarded_output_lies_between_input_and_model_output():
    x, y = _pair(40, 36)
    out, w = apply_guard(_net(), x, y)
    lo, hi = np.minimum(x, y), np.maximum(x, y)
    assert 0 < w < 1 and np.all(out >= lo - 1e-6) and np.all(out <= hi + 1e-6)
    out, w = apply_guard(_net(bias=-60.0), x, y)  # a guard that trusts nothing: the input, unchanged
    np.testing.assert_allclose(out, x, atol=1e-6)
    assert w < 1e-6
    out, w = apply_guard(_net(bias=60.0), x, y)  # trusts everything: the model's output
    np.testing.assert_allclose(out, y, atol=1e-6)
    with pytest.raises(ValueError, match="one \\(H, W, 3\\) shape"):
        apply_guard(_net(), x, y[:20])
    with pytest.raises(ValueError, match="share memory"):
        apply_guard(_net(), x, y, out=y)


def test_gate_leaves_the_image_alone_under_min_share():
    """Mean weight under the gate: the input itself, not a faint mix; at or over it: the usual mix."""
    x, y = _pair(40, 36)
    net = _net()
    mixed, w = apply_guard(net, x, y)
    assert 0.05 < w < 0.95 and np.abs(mixed - x).max() > 1e-3
    out, w_gated = apply_guard(net, x, y, min_share=w + 1e-3)
    assert w_gated == w
    np.testing.assert_array_equal(out, x)
    np.testing.assert_array_equal(apply_guard(net, x, y, min_share=w - 1e-3)[0], mixed)
    net.min_share = w + 1e-3  # the network's own gate is the default
    np.testing.assert_array_equal(apply_guard(net, x, y)[0], x)
    np.testing.assert_array_equal(apply_guard(net, x, y, min_share=0.0)[0], mixed)


@pytest.mark.parametrize("global_context, frame_weight", FORMS)
def test_save_and_load_round_trip(tmp_path, global_context, frame_weight):
    net = _net(3, global_context=global_context, frame_weight=frame_weight)
    save_guard(net, tmp_path / "g.safetensors")
    back = load_guard(tmp_path / "g.safetensors")
    assert (back.global_context, back.frame_weight) == (global_context, frame_weight)
    x, y = _pair(20, 22)
    np.testing.assert_array_equal(guard_weights(back, x, y), guard_weights(net, x, y))
    (tmp_path / "bad.safetensors").write_bytes(b"not a guard")
    with pytest.raises(ValueError, match="bad.safetensors: not a guard network"):
        load_guard(tmp_path / "bad.safetensors")


def test_frame_weight_keeps_the_change_over_the_whole_image():
    """The whole-image weight s lifts every pixel's weight to at least s (s + (1 - s) w), and only where the
    network has it; at the start of training s is small (sigmoid(-5)), so a new guard trusts nothing by default."""
    x, y = _pair(40, 48)
    plain = _net(5, bias=-8.0, global_context=True)
    framed = _net(5, bias=-8.0, global_context=True, frame_weight=True)
    framed.load_state_dict(plain.state_dict(), strict=False)  # the same per-pixel part
    with torch.no_grad():
        framed.frame.weight.zero_()
        framed.frame.bias.fill_(np.log(0.3 / 0.7))  # s = 0.3
    wp, wf = guard_weights(plain, x, y), guard_weights(framed, x, y)
    assert wp.max() < 0.01
    np.testing.assert_allclose(wf, 0.3 + 0.7 * wp, atol=1e-6)
    assert GuardNet(8, frame_weight=True).global_context  # the frame weight needs the whole-image context
    fresh = GuardNet(8, frame_weight=True).eval()
    with torch.no_grad():
        s = torch.sigmoid(fresh.frame(torch.randn(4, 16)))
    assert float(s.max()) < 0.05


@pytest.fixture
def guarded(tmp_path, monkeypatch):
    """A private catalogue entry 'tiny-guarded': a tiny x1 model whose MANIFEST entry may carry a guard."""
    from tests.test_compile import tiny_compact

    d = tmp_path / "w"
    d.mkdir()
    path = tiny_compact(d / "tiny.safetensors", scale=1)
    digest = hashlib.sha256(path.read_bytes()).hexdigest()

    def manifest(net=None, sha=None, exposed=None, **extra):
        entry = {"name": "tiny-guarded", "file": "tiny.safetensors", "sha256": digest, "arch": "Compact",
                 "task": "restoration"}
        if net is not None:
            save_guard(net, d / "tiny-guard.safetensors")
            real = hashlib.sha256((d / "tiny-guard.safetensors").read_bytes()).hexdigest()
            entry["guard"] = {"file": "tiny-guard.safetensors", "sha256": sha or real, **extra}
        if exposed is not None:
            save_guard(exposed, d / "tiny-guard-exposed.safetensors")
            real = hashlib.sha256((d / "tiny-guard-exposed.safetensors").read_bytes()).hexdigest()
            entry["guard"]["exposed"] = {"file": "tiny-guard-exposed.safetensors", "sha256": real}
        (d / "MANIFEST").write_text(yaml.safe_dump({"version": 1, "models": [entry]}))
        cat.refresh()

    monkeypatch.setenv("RESTORE_WEIGHTS", str(d))
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    yield manifest
    cat.refresh()


def _run(name, px, **opts):
    ctx = Context()
    out = ModelStage(ModelOptions(name=name, tile=0, precision="fp32", threads=1, **opts))(
        Image(px, SRGB, Metadata()), ctx)
    return out.pixels, ctx.notes


def test_model_step_applies_the_catalogue_guard(guarded):
    px = np.random.default_rng(0).random((24, 32, 3)).astype(np.float32)
    guarded(None)
    raw, notes = _run("tiny-guarded", px)
    assert not any("guard" in n for n in notes)
    assert float(np.mean(np.abs(raw - px))) > 0.01  # the random tiny model changes the image a lot
    guarded(_net(bias=-60.0))  # a guard that trusts nothing: the photo is left alone
    out, notes = _run("tiny-guarded", px)
    np.testing.assert_allclose(out, px, atol=1e-6)
    assert any("kept 0% of the model's change" in n for n in notes)
    net = _net(5)
    guarded(net)  # a real mix: exactly what apply_guard gives, in the model's encoding
    out, _ = _run("tiny-guarded", px)
    np.testing.assert_allclose(out, apply_guard(net, px, raw)[0], atol=1e-5)
    out, notes = _run("tiny-guarded", px, guard="off")
    np.testing.assert_allclose(out, raw, atol=1e-6)
    assert not any("guard" in n for n in notes)


def test_model_step_applies_the_catalogue_gate(guarded):
    """``min_share`` of the MANIFEST entry gates the step: over the guard's mean weight the photo is unchanged and the
    run log says why; a malformed value fails once, at load, naming the MANIFEST."""
    px = np.random.default_rng(0).random((24, 32, 3)).astype(np.float32)
    net = _net(5)
    guarded(net, min_share=0.0)
    mixed, notes = _run("tiny-guarded", px)
    w = float(notes[-1].split("kept ")[1].split("%")[0]) / 100
    assert np.abs(mixed - px).max() > 1e-3 and 0.02 < w < 0.98
    guarded(net, min_share=0.99)
    out, notes = _run("tiny-guarded", px)
    np.testing.assert_array_equal(out, px)
    assert any("left the image unchanged" in n and "under its gate 99.0%" in n for n in notes)
    for bad in (1.5, "0.1", True):
        guarded(net, min_share=bad)
        with pytest.raises(Exception, match="MANIFEST.*min_share must be a number in \\[0, 1\\)"):
            _run("tiny-guarded", px)


def test_model_step_exposes_hdr_for_a_same_size_model(guarded):
    """hdr: auto on linear input above 1 (issue 20): a same-size model sees the display exposure
    (:class:`restore.color.ExposureEncoding`), and its output comes back through that encoding's decode; ``hdr: log``
    still gives the log encoding."""
    from restore import color
    from restore.image import LINEAR_REC709

    guarded(None)
    rng = np.random.default_rng(1)
    hdr = (color.srgb_to_linear(rng.random((24, 32, 3)).astype(np.float32)) * 6.0).astype(np.float32)
    ex = color.ExposureEncoding(hdr)
    seen = []

    def run(name, px, **opts):
        stage = ModelStage(ModelOptions(name=name, tile=0, precision="fp32", threads=1, **opts))
        stage.prepare()
        inner = stage._run
        stage._run = lambda hwc, ctx: seen.append(hwc.copy()) or inner(hwc, ctx)
        return stage(Image(px, LINEAR_REC709, Metadata()), Context()).pixels

    out = run("tiny-guarded", hdr)
    np.testing.assert_allclose(seen[-1], ex.encoded, atol=1e-6)
    direct, _ = _run("tiny-guarded", ex.encoded)  # the model on the exposed sRGB photo
    np.testing.assert_allclose(out, ex.decode(direct), rtol=1e-4, atol=1e-4)
    run("tiny-guarded", hdr, hdr="log")
    np.testing.assert_allclose(seen[-1], color.hdr_encode(hdr, float(hdr.max())), atol=1e-6)


def test_exposed_hdr_input_gets_the_exposed_guard(guarded):
    """A MANIFEST guard with an ``exposed`` entry: HDR input the step exposes is guarded by that one, sRGB input and
    HDR through ``hdr: log`` by the main guard; without the entry, the main guard guards both."""
    from restore import color
    from restore.image import LINEAR_REC709

    rng = np.random.default_rng(2)
    ldr = rng.random((24, 32, 3)).astype(np.float32)
    hdr = (color.srgb_to_linear(ldr) * 5.0).astype(np.float32)

    def run(px, enc, **opts):
        ctx = Context()
        stage = ModelStage(ModelOptions(name="tiny-guarded", tile=0, precision="fp32", threads=1, **opts))
        return stage(Image(px, enc, Metadata()), ctx).pixels, ctx.notes

    guarded(_net(bias=60.0), exposed=_net(bias=-60.0))  # main guard keeps everything; exposed guard nothing
    out, notes = run(hdr, LINEAR_REC709)
    np.testing.assert_allclose(out, hdr, rtol=1e-5, atol=1e-6)  # the exposed guard left it alone
    assert any("kept 0%" in n for n in notes)
    out, notes = run(ldr, SRGB)
    assert np.abs(out - ldr).max() > 1e-2 and any("kept 100%" in n for n in notes)
    out, notes = run(hdr, LINEAR_REC709, hdr="log")
    assert np.abs(out - hdr).max() > 1e-2 and any("kept 100%" in n for n in notes)
    guarded(_net(bias=60.0))  # no exposed entry: the main guard for exposed input too
    out, notes = run(hdr, LINEAR_REC709)
    assert np.abs(out - hdr).max() > 1e-2 and any("kept 100%" in n for n in notes)


def test_a_wrong_guard_file_fails_once_at_load(guarded):
    px = np.zeros((8, 8, 3), np.float32)
    guarded(_net(), sha="0" * 64)
    with pytest.raises(Exception, match="MANIFEST.*sha256 .* does not match"):
        _run("tiny-guarded", px)


def test_shipped_starters_carry_a_guard():
    """Each shipped starter's MANIFEST entry names a guard whose file is present and matches its checksum."""
    from restore.guard import guard_for

    cat.refresh()
    for name in ("derain-starter", "weather-starter", "reflection-starter"):
        entry = cat.find(name)
        if entry is None or "guard" not in entry.extra:
            pytest.fail(f"{name}: no guard in weights/MANIFEST")
        assert isinstance(guard_for(name), GuardNet)


def test_train_guard_runs(tmp_path):
    """data_tools/train_guard.py end to end on a few pairs (pypi images only)."""
    cmd = [sys.executable, str(ROOT / "data_tools/train_guard.py"), "--task", "derain", "--model", "derain-starter",
           "--out", str(tmp_path / "run"), "--pairs", "6", "--patch", "64", "--steps", "3", "--batch", "2",
           "--images", "pypi", "--global-context"]
    r = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr[-2000:]
    assert "identity" in r.stdout and (tmp_path / "run/guard.safetensors").is_file()
    first = load_guard(tmp_path / "run/guard.safetensors")
    # a whole-image weight learnt on top of it (the cached pairs reused): the per-pixel guard stays exactly as it was
    more = ["--init", str(tmp_path / "run/guard.safetensors"), "--frame-weight", "--frame-only", "--harm-weight", "1",
            "--weights", str(tmp_path / "framed.safetensors")]
    r = subprocess.run(cmd + more, capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr[-2000:]
    framed = load_guard(tmp_path / "framed.safetensors")
    assert framed.frame_weight and not first.frame_weight
    sd = framed.state_dict()
    assert sd["frame.bias"].item() != -5.0  # trained
    for k, v in first.state_dict().items():
        torch.testing.assert_close(sd[k], v, rtol=0, atol=0)
    r = subprocess.run(cmd + ["--frame-only"], capture_output=True, text=True, timeout=300)
    assert r.returncode == 2 and "--frame-only needs --init and --frame-weight" in r.stderr


def test_denoise_pairs_are_camera_developments_with_the_estimated_level():
    """train_guard --task denoise: identity pairs are the 8-bit clean development itself; light pairs carry less
    noise than heavy ones; each pair's conditioning is estimate_sigma of its 8-bit input."""
    from data_tools.train_guard import draw_denoise_pairs
    from restore.noise import estimate_sigma

    rng = np.random.default_rng(3)
    images = [rng.random((96, 96, 3)).astype(np.float32) * 0.3 + 0.3 for _ in range(2)]
    x, c, kinds, sigma = draw_denoise_pairs(images, np.random.default_rng(0), 24, 32, 0.3, 0.35, 0.0)
    assert x.shape == c.shape == (24, 3, 32, 32) and sigma.shape == (24,) and set(kinds) == {0, 1, 2}
    assert torch.equal(x, torch.round(x * 255) / 255)  # 8-bit inputs, as a saved photo
    for i in range(24):
        assert sigma[i].item() == pytest.approx(estimate_sigma(x[i].numpy().transpose(1, 2, 0)), rel=1e-6)
        if kinds[i] == 0:
            assert torch.allclose(x[i], c[i], atol=0.5 / 255 + 1e-6)
    err = [float((x[kinds == k] - c[kinds == k]).square().mean()) for k in (1, 2)]
    assert err[0] < err[1]


def test_model_outputs_append_the_noise_level_plane(monkeypatch):
    """train_guard.model_outputs gives the RGB denoiser its conditioning plane: a model reading the plane back
    returns it in every pixel."""
    import restore
    from data_tools import train_guard

    class Echo(torch.nn.Module):
        def forward(self, x):
            return x[:, 3:4].expand(-1, 3, -1, -1)

    class Loaded:
        module = Echo()

    monkeypatch.setattr(restore, "load_model", lambda name: Loaded())
    y = train_guard.model_outputs("echo", torch.zeros(5, 3, 8, 8), batch=2, sigma=torch.arange(5.0) / 10)
    assert torch.allclose(y[:, :, 4, 4], (torch.arange(5.0) / 10)[:, None].expand(5, 3))


def test_denoise_calibration_scores_each_level_against_the_clean_development(tmp_path):
    """calibrate_guard --only denoise: one clean row (PSNR against the input) and one row per ISO level (gain over
    the noisy input) per crop; with a guard that keeps nothing every gain is exactly 0 and the clean crop is left
    alone (the rows measure the guarded output, not the network's)."""
    from data_tools import calibrate_guard
    from restore.models.archs.rgbdenoise import DenoiseUNet
    from safetensors.torch import save_file

    torch.manual_seed(0)
    weights = tmp_path / "den.safetensors"
    save_file({k: v.contiguous() for k, v in DenoiseUNet(base=8).state_dict().items()}, str(weights))
    save_guard(_net(bias=-30.0), tmp_path / "g.safetensors")
    rng = np.random.default_rng(0)
    crops = [(f"c{i}", np.round(rng.random((64, 64, 3)) * 255) / 255) for i in range(2)]
    rows = calibrate_guard.denoise_rows(str(weights), crops, tmp_path / "g.safetensors")
    assert [r["set"] for r in rows[:5]] == ["clean", "light", "light", "heavy", "heavy"] and len(rows) == 10
    assert all(r["gain_rgb"] == 0.0 for r in rows if r["set"] != "clean")
    assert all(r["psnr_out_rgb"] >= 100 for r in rows if r["set"] == "clean")
    assert all(r["guard_w"] < 1e-6 for r in rows)


def test_hdr_pairs_are_log_encoded_as_the_model_step_encodes_an_exr():
    """train_guard --hdr: the chosen pairs are decoded to linear, brightened and log-encoded with one peak above
    the patch's own maximum (so input and target stay comparable and the step's ``hdr: auto`` path applies)."""
    from data_tools.train_guard import log_encode_pairs
    from restore import color

    rng = np.random.default_rng(0)
    x = torch.from_numpy(rng.random((6, 3, 16, 16), dtype=np.float32))
    c = x.clone()
    same_x, same_c = log_encode_pairs(x, c, np.random.default_rng(1), 0.0)
    assert torch.equal(same_x, x) and torch.equal(same_c, c)
    ex, ec = log_encode_pairs(x, c, np.random.default_rng(1), 1.0)
    assert torch.equal(ex, ec)  # identity pairs stay identity pairs: one peak for both
    assert float(ex.min()) >= 0 and float(ex.max()) < 1  # the peak lies above the patch's brightest pixel
    assert not torch.allclose(ex, x, atol=1e-3)
    # the encoding is the step's: decoding with some peak > 1 gives back a brightened linear patch
    lin = color.srgb_to_linear(x[0].numpy())
    ratios = []
    for peak in np.exp(np.linspace(0, np.log(16 * 8 * 1.0), 4000)):
        dec = color.hdr_decode(ex[0].numpy(), max(peak, 1.0))
        ratios.append(np.abs(dec / np.maximum(lin, 1e-6) - dec.max() / lin.max()).max())
    assert min(ratios) < 1e-2


def test_calibration_rule_picks_the_smallest_gate_that_drops_the_low_weight_losses():
    """data_tools/calibrate_guard.py: the gate is the smallest candidate that leaves the fewest losing crops while
    giving up at most GIVE_UP_DB per gated crop on average; losses at high weight cannot be gated away."""
    from data_tools.calibrate_guard import GIVE_UP_DB, gate_table

    def rows(pairs):
        return [{"set": "light", "guard_w": w, "gain_rgb": g} for w, g in pairs] + [{"set": "clean", "guard_w": 0.0}]

    table, pick = gate_table(rows([(0.0, 0.0), (0.003, -0.05), (0.008, -0.02), (0.5, 2.0), (0.9, -1.0)]))
    assert pick == 0.01  # both low-weight losses gated; the loss at w 0.9 stays whatever the gate
    row = next(r for r in table if r["gate"] == pick)
    assert row["gated"] == 3 and row["losses_kept"] == 1 and row["clean_gated"] == 1
    # a low-weight crop that gained a lot: gating it would give up more than GIVE_UP_DB on average
    _, pick = gate_table(rows([(0.003, -0.05), (0.008, 1.0 + 3 * GIVE_UP_DB)]))
    assert pick == 0.005
    assert gate_table(rows([(0.5, 1.0)]))[1] == 0.0  # nothing to gate: no gate


def test_calibration_exposes_crops_as_the_model_step_exposes_hdr():
    """calibrate_guard --exposed shows an 8-bit crop as the step shows that crop times any gain (hdr: exposure)."""
    from data_tools.calibrate_guard import expose
    from restore import color

    rng = np.random.default_rng(3)
    x = (np.round(rng.random((16, 20, 3)) * 200) / 255).astype(np.float32)  # darker than white: exposure brightens
    ref = np.clip(x + 0.05, 0, 1).astype(np.float32)
    ex, ex_ref = expose(x, ref)
    for gain in (4.0, 16.0):
        step = color.ExposureEncoding((color.srgb_to_linear(x) * gain).astype(np.float32))
        np.testing.assert_allclose(ex, step.encoded, atol=2e-5)
    assert float(ex.mean()) > float(x.mean()) and ex.max() <= 1.0
    p = float(np.percentile(color.srgb_to_linear(x).max(axis=-1), 99.5))
    np.testing.assert_allclose(ex_ref, color.linear_to_srgb(np.clip(color.srgb_to_linear(ref) / p, 0, 1)), atol=1e-6)


def test_re_expose_renders_both_sides_of_a_pair_at_one_exposure():
    """train_guard --exposure: input and target brightened by one factor in linear light, clipped to white, sRGB."""
    from data_tools.train_guard import re_expose
    from restore import color

    rng = np.random.default_rng(0)
    x = torch.from_numpy(rng.random((1, 3, 8, 8), dtype=np.float32))
    same_x, same_c = re_expose(x, x.clone(), 1.0)
    assert torch.equal(same_x, same_c) and torch.allclose(same_x, x, atol=1e-5)
    bx, bc = re_expose(x, x * 0.5, 2.0)
    want = color.linear_to_srgb(np.clip(color.srgb_to_linear(x.numpy()) * 2, 0, 1))
    np.testing.assert_allclose(bx.numpy(), want, atol=1e-6)
    assert float(bx.max()) <= 1.0 and float((bx - x).min()) >= -1e-6
    np.testing.assert_allclose(bc.numpy(), color.linear_to_srgb(np.clip(color.srgb_to_linear(x.numpy() * 0.5) * 2, 0, 1)),
                               atol=1e-6)


def test_guard_hdr_degraded_gains_score_the_step_against_the_clean_crop():
    """benchmarks/guard_hdr.py --degraded: a step that returns its input gains exactly 0 dB on every draw; one that
    doubles the radiance (rain only adds light) loses on every draw."""
    sys.path.insert(0, str(ROOT / "benchmarks"))
    import guard_hdr

    rng = np.random.default_rng(0)
    crops = [(f"c{i}", np.round(rng.random((32, 32, 3)) * 255) / 255) for i in range(2)]

    class Step:
        def __init__(self, gain):
            self.gain = gain

        def __call__(self, image, ctx):
            return image.with_pixels((image.pixels * self.gain).astype(np.float32), image.encoding)

    same = guard_hdr.degraded_gains(Step(1.0), "derain", crops, 4.0)
    assert [len(v) for v in same.values()] == [2, 2]
    assert all(abs(g) < 1e-9 for rows in same.values() for _, g in rows)
    bright = guard_hdr.degraded_gains(Step(2.0), "derain", crops, 4.0)
    assert all(g < -1 for rows in bright.values() for _, g in rows)


def test_guard_hdr_clean_psnr_scores_the_step_against_its_input_in_the_log_encoding():
    """benchmarks/guard_hdr.py (clean rows): an identity step scores the cap; a step that brightens by 10 % scores
    exactly the PSNR of the two log encodings with the input's peak (at least 1)."""
    sys.path.insert(0, str(ROOT / "benchmarks"))
    import guard_hdr

    from restore import color

    rng = np.random.default_rng(0)
    crops = [(f"c{i}", np.round(rng.random((16, 16, 3)) * 255) / 255) for i in range(2)]
    assert guard_hdr.clean_psnr(lambda image, ctx: image, crops, 4.0) == [100.0, 100.0]
    got = guard_hdr.clean_psnr(lambda image, ctx: image.with_pixels(image.pixels * 1.1, image.encoding), crops, 4.0)
    for (_, x), p in zip(crops, got):
        lin = (color.srgb_to_linear(x.astype(np.float32)) * 4.0).astype(np.float32)
        peak = max(float(lin.max()), 1.0)
        a, b = color.hdr_encode(lin, peak), color.hdr_encode(lin * np.float32(1.1), peak)
        want = 10 * np.log10(1.0 / np.mean((a.astype(np.float64) - b) ** 2))
        assert p == pytest.approx(want, abs=1e-6) and p < 60


def test_guard_hdr_exr_check_reads_every_exr_of_the_folder(tmp_path):
    """benchmarks/guard_hdr.py --exr: each EXR goes through the step as linear Rec.709 and is scored against
    itself; an identity step scores the cap."""
    sys.path.insert(0, str(ROOT / "benchmarks"))
    import guard_hdr

    from restore.image import LINEAR_REC709
    from restore.io import write_exr

    rng = np.random.default_rng(0)
    for name in ("a.exr", "b.exr"):
        px = (rng.random((8, 10, 3)) * 5).astype(np.float32)
        write_exr(Image(px, LINEAR_REC709, Metadata()), tmp_path / name)
    rows = guard_hdr.exr_psnr(lambda image, ctx: image, tmp_path)
    assert [r[0] for r in rows] == ["a.exr", "b.exr"]
    assert all(peak > 1 and p == 100.0 for _, peak, p in rows)
    doubled = guard_hdr.exr_psnr(lambda image, ctx: image.with_pixels(image.pixels * 2, image.encoding), tmp_path)
    assert all(p < 40 for _, _, p in doubled)
