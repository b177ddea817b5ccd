"""Real workloads (issue 15): camera-card trees, repeated names, changed files, slow but progressing items,
brackets without EXIF, folders of bracket folders."""

from __future__ import annotations

import shutil
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import cv2
import numpy as np
import pytest

import restore
from restore.engine import OutputCollisionError
from restore.journal import JOURNAL_NAME
from restore.pipeline import collect_inputs, load_pipeline
from restore.watch import Watcher, WatchOptions

HALF = "version: 1\nname: half\nsteps:\n  - resize: {scale: 0.5}\n  - write: {path: '{stem}_x.png'}\n"


def cli(*args, timeout=300):
    return subprocess.run([sys.executable, "-m", "restore.cli", *map(str, args)], capture_output=True, text=True, timeout=timeout)


def png(path: Path, seed: int, size=(16, 16)) -> np.ndarray:
    path.parent.mkdir(parents=True, exist_ok=True)
    img = (np.random.default_rng(seed).random((*size, 3)) * 255).astype(np.uint8)
    assert cv2.imwrite(str(path), img)
    return img


def journal_rows(out: Path) -> dict[str, str]:
    db = sqlite3.connect(out / JOURNAL_NAME)
    try:
        return {Path(p).relative_to(Path(p).parents[1]).as_posix(): o for p, o in db.execute("SELECT path, outputs FROM items")}
    finally:
        db.close()


# -- item 5: repeated names ------------------------------------------------------------------------


def test_a_camera_card_tree_is_mirrored_under_the_output_folder(tmp_path):
    card = tmp_path / "DCIM"
    a = png(card / "100CANON" / "IMG_0001.png", 1)
    b = png(card / "101CANON" / "IMG_0001.png", 2)
    (tmp_path / "p.yaml").write_text(HALF)
    out = tmp_path / "out"
    r = cli("run", tmp_path / "p.yaml", card, "-r", "-o", out)
    assert r.returncode == 0, r.stdout + r.stderr
    assert "2 done" in r.stdout
    oa, ob = cv2.imread(str(out / "100CANON" / "IMG_0001_x.png")), cv2.imread(str(out / "101CANON" / "IMG_0001_x.png"))
    assert oa is not None and ob is not None and oa.shape == ob.shape == (8, 8, 3)
    assert np.abs(oa.astype(int) - cv2.resize(a, (8, 8), interpolation=cv2.INTER_LANCZOS4)).mean() < 40
    assert not np.array_equal(oa, ob)  # each input its own output
    rows = journal_rows(out)
    assert sorted(rows) == ["100CANON/IMG_0001.png", "101CANON/IMG_0001.png"]
    assert "100CANON/IMG_0001_x.png" in rows["100CANON/IMG_0001.png"] and "101CANON/IMG_0001_x.png" in rows["101CANON/IMG_0001.png"]
    r = cli("run", tmp_path / "p.yaml", card, "-r", "-o", out)  # a rerun skips both, saying why
    assert r.returncode == 0 and "0 done, 2 skipped (2 done before)" in r.stdout
    del b


def test_two_inputs_onto_one_output_are_refused_before_anything_runs(tmp_path):
    d = tmp_path / "flat"
    img = png(d / "photo.png", 1)
    cv2.imwrite(str(d / "photo.jpg"), img)
    cv2.imwrite(str(d / "photo.tif"), img)
    (tmp_path / "p.yaml").write_text(HALF)
    out = tmp_path / "out"
    r = cli("run", tmp_path / "p.yaml", d, "-o", out)
    assert r.returncode == 2 and "Traceback" not in r.stderr
    assert "nothing was run" in r.stderr and "photo_x.png <- " in r.stderr
    assert all(f"{d / n}" in r.stderr for n in ("photo.jpg", "photo.png", "photo.tif"))
    assert not out.exists()
    # {suffix} (without its dot) tells them apart
    (tmp_path / "q.yaml").write_text(HALF.replace("{stem}_x.png", "{stem}_{suffix}.png"))
    r = cli("run", tmp_path / "q.yaml", d, "-o", out)
    assert r.returncode == 0 and sorted(p.name for p in out.glob("*.png")) == ["photo_jpg.png", "photo_png.png", "photo_tif.png"]


def test_api_refuses_collisions_and_mirrors_with_roots(tmp_path):
    png(tmp_path / "a" / "x.png", 1)
    png(tmp_path / "b" / "x.png", 2)
    pipe = load_pipeline(HALF)
    files = collect_inputs([tmp_path], recursive=True)
    with pytest.raises(OutputCollisionError, match=r"x_x\.png <- .*a/x\.png, .*b/x\.png"):
        pipe.run(files, tmp_path / "out")
    assert not (tmp_path / "out").exists()
    report = pipe.run(files, tmp_path / "out", roots=[tmp_path])
    assert report.count("done") == 2
    assert (tmp_path / "out" / "a" / "x_x.png").is_file() and (tmp_path / "out" / "b" / "x_x.png").is_file()


def test_an_output_recorded_for_another_input_is_not_taken_over(tmp_path):
    d = tmp_path / "in"
    png(d / "photo.jpg", 1)
    (tmp_path / "p.yaml").write_text(HALF)
    out = tmp_path / "out"
    assert cli("run", tmp_path / "p.yaml", d, "-o", out).returncode == 0
    before = (out / "photo_x.png").read_bytes()
    png(d / "photo.png", 2)  # a later file with the same stem, run on its own
    r = cli("run", tmp_path / "p.yaml", d / "photo.png", "-o", out)
    assert r.returncode == 1
    assert f"{d / 'photo.png'}: its output {out / 'photo_x.png'} is already the output of {(d / 'photo.jpg').resolve()}" in r.stdout
    assert (out / "photo_x.png").read_bytes() == before


def test_watch_mirrors_sub_folders_and_fails_a_second_writer_of_one_output(tmp_path):
    d = tmp_path / "in"
    png(d / "a" / "x.png", 1)
    png(d / "b" / "x.png", 2)
    png(d / "c.jpg", 3)
    png(d / "c.png", 4)
    w = Watcher(load_pipeline(HALF), d, tmp_path / "out", WatchOptions(once=True, recursive=True, settle_s=0.1, timeout_s=None, poll_s=0.02))
    report = w.run()
    assert (tmp_path / "out" / "a" / "x_x.png").is_file() and (tmp_path / "out" / "b" / "x_x.png").is_file()
    assert sorted(r.input.name for r in report.done) == ["c.jpg", "x.png", "x.png"]
    assert [r.input.name for r in report.failed] == ["c.png"] and "already the output of" in report.failed[0].error


# -- item 6: a changed input replaces its stale output in watch -----------------------------------------------


def test_watch_reprocesses_a_changed_input_and_replaces_its_output(tmp_path):
    d = tmp_path / "in"
    png(d / "a.png", 1, (32, 32))
    opts = dict(once=True, settle_s=0.1, timeout_s=None, poll_s=0.02)
    assert len(Watcher(load_pipeline(HALF), d, tmp_path / "out", WatchOptions(**opts)).run().done) == 1
    first = cv2.imread(str(tmp_path / "out" / "a_x.png"))
    time.sleep(0.05)
    new = png(tmp_path / "other.png", 9, (32, 32))
    shutil.copy(tmp_path / "other.png", d / "a.png")  # a different image copied over a processed one
    report = Watcher(load_pipeline(HALF), d, tmp_path / "out", WatchOptions(**opts)).run()
    assert [r.input.name for r in report.done] == ["a.png"] and report.skipped == 0
    second = cv2.imread(str(tmp_path / "out" / "a_x.png"))
    assert not np.array_equal(first, second)
    assert np.abs(second.astype(int) - cv2.resize(new, (16, 16), interpolation=cv2.INTER_LANCZOS4)).mean() < 40
    # and through the daemon's own event path: the journal row was marked pending by the scan first
    time.sleep(0.05)
    shutil.copy(tmp_path / "out" / "a_x.png", tmp_path / "keep.png")
    png(d / "a.png", 11, (32, 32))
    w = Watcher(load_pipeline(HALF), d, tmp_path / "out", WatchOptions(settle_s=0.1, timeout_s=None, poll_s=0.02, rescan_s=0.2))
    import threading

    th = threading.Thread(target=w.run)
    th.start()
    try:
        deadline = time.monotonic() + 20
        while not w.report.done and time.monotonic() < deadline:
            time.sleep(0.05)
    finally:
        w.stop()
        th.join(30)
    assert [r.input.name for r in w.report.done] == ["a.png"]
    assert (tmp_path / "out" / "a_x.png").read_bytes() != (tmp_path / "keep.png").read_bytes()


# -- item 7: the time limit is a stall limit ----------------------------------------------------------------


def test_a_slow_item_that_makes_progress_is_not_killed_a_stalled_one_is(tmp_path):
    from tests.test_compile import tiny_compact

    w = tiny_compact(tmp_path / "slow.safetensors", feat=32, convs=8, scale=1)
    (tmp_path / "p.yaml").write_text(
        f"version: 1\nname: slow\nsteps:\n  - model: {{name: {w}, tile: 64, overlap: 8, precision: fp32, threads: 1}}\n"
        "  - write: {path: '{stem}_s.png'}\n")
    d = tmp_path / "in"
    # ~600 tiles of 0.01-0.1 s each: several times the 1 s limit in total, also on a fast idle CPU (704 px took
    # 1.6 s on an idle AMD EPYC Zen 4: too quick to show anything)
    png(d / "big.png", 1, (1408, 1408))
    r = cli("run", tmp_path / "p.yaml", d, "-o", tmp_path / "out", "--timeout", "1")
    assert r.returncode == 0, r.stdout + r.stderr
    took = float(r.stdout.split("done     ")[1].split("(")[1].split(" s)")[0])
    assert took > 2, f"the item took {took} s: too fast to show that progress keeps it alive"
    assert (tmp_path / "out" / "big_s.png").is_file()
    # an item without progress (one whole-image forward over a large photo: no tiles) is stopped, named
    from tests.test_crash import stalling

    (tmp_path / "stall").mkdir()
    stall_pipe, stuck = stalling(tmp_path / "stall")
    t0 = time.monotonic()
    r = cli("run", stall_pipe, stuck, "-o", tmp_path / "out2", "--timeout", "1")
    assert r.returncode == 1 and "hang.png: timed out: no progress for 1 s" in r.stdout
    assert time.monotonic() - t0 < 60


# -- item 9: progress ---------------------------------------------------------------------------------------


def test_notes_print_under_their_own_file(tmp_path):
    from tests.test_compile import tiny_compact

    w = tiny_compact(tmp_path / "t.safetensors")
    (tmp_path / "p.yaml").write_text(f"version: 1\nname: t\nsteps:\n  - model: {{name: {w}, tile: 0}}\n  - write: {{path: '{{stem}}_x2.png'}}\n")
    d = tmp_path / "in"
    png(d / "one.png", 1)
    png(d / "two.png", 2)
    r = cli("run", tmp_path / "p.yaml", d, "-o", tmp_path / "out", "--timeout", "0")
    assert r.returncode == 0, r.stderr
    lines = r.stdout.splitlines()
    first = next(i for i, x in enumerate(lines) if x.startswith("done") and "one.png" in x)
    second = next(i for i, x in enumerate(lines) if x.startswith("done") and "two.png" in x)
    notes = [x for x in lines[first + 1 : second]]
    assert notes and all(x.strip().startswith("one.png: ") for x in notes)  # the thread-count note, named
    assert any("threads" in x for x in notes)


# -- items 10 and 12: brackets without EXIF, one bracket per folder -----------------------------------------


def bracket(folder: Path, seed: int, size=(48, 64), evs=(-1.0, 0.0, 1.0), names=None):
    """A synthetic scene photographed at ``evs``: 8-bit sRGB PNGs without EXIF."""
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    radiance = np.exp(rng.normal(-2.0, 1.2, (*size, 3))).astype(np.float32)
    radiance = cv2.GaussianBlur(radiance, (0, 0), 2)
    names = names or [f"f{k}.png" for k in range(len(evs))]
    for n, ev in zip(names, evs):
        lin = np.clip(radiance * 2.0**ev, 0, 1)
        srgb = np.where(lin <= 0.0031308, 12.92 * lin, 1.055 * lin ** (1 / 2.4) - 0.055)
        cv2.imwrite(str(folder / n), (srgb * 255 + 0.5).astype(np.uint8))


def test_exposure_fusion_without_exif_fuses_each_folder(tmp_path):
    root = tmp_path / "shoot"
    bracket(root / "scene1", 1, (48, 64))
    bracket(root / "scene2", 2, (64, 48))  # another size: it must never join scene1's bracket
    out = tmp_path / "out"
    r = cli("run", Path("pipelines/exposure-fusion.yaml").resolve(), root, "-o", out)
    assert r.returncode == 2 and "add -r to read sub-folders" in r.stderr and "2 sub-folders" in r.stderr
    r = cli("run", Path("pipelines/exposure-fusion.yaml").resolve(), root, "-r", "-o", out)
    assert r.returncode == 0, r.stdout + r.stderr
    assert "2 done, 0 skipped, 0 failed" in r.stdout
    a, b = read_png(out / "scene1" / "f0-f2_fused.png"), read_png(out / "scene2" / "f0-f2_fused.png")
    assert a.shape == (48, 64, 3) and b.shape == (64, 48, 3)


def read_png(p: Path) -> np.ndarray:
    img = cv2.imread(str(p), cv2.IMREAD_UNCHANGED)
    assert img is not None, p
    return img


def test_brackets_without_exif_split_where_the_scene_changes(tmp_path):
    from restore.hdr.group import FrameInfo, frame_look, group_brackets, probe

    d = tmp_path / "mixed"  # two scenes in one folder, three exposures each, no EXIF
    bracket(d, 1, names=["a1.png", "a2.png", "a3.png"], evs=(0.0, -2.0, 2.0))
    bracket(d, 2, names=["b1.png", "b2.png", "b3.png"], evs=(-0.5, -2.5, 1.5))
    infos = [probe(p) for p in sorted(d.glob("*.png"))]
    groups = group_brackets(infos, need_times=False, look=frame_look)
    assert [[i.path.stem for i in g] for g in groups] == [["a1", "a2", "a3"], ["b1", "b2", "b3"]]
    with pytest.raises(restore.errors.InputError, match="no exposure times"):
        group_brackets(infos, need_times=True, look=frame_look)
    del FrameInfo


@pytest.mark.parametrize("stack", ["taipei_night", "memorial_debevec"])
def test_a_real_bracket_without_exposure_times_stays_one_group(stack):
    from restore.hdr.group import frame_look, group_brackets, probe
    from tests.golden import shared_path

    files = sorted(shared_path("data", "brackets", stack).glob("*.png"))  # 10 and 16 frames, 1 EV apart
    (g,) = group_brackets([probe(p) for p in files], need_times=False, look=frame_look)
    assert [i.path for i in g] == files


def test_fusion_of_a_real_bracket_without_exposure_times(tmp_path):
    from tests.golden import shared_path

    src = shared_path("data", "brackets", "taipei_night")
    d = tmp_path / "taipei"
    d.mkdir()
    for n in ("DSC_0060.png", "DSC_0062.png", "DSC_0064.png"):  # no exposures.csv: nothing but the pixels
        small = cv2.resize(cv2.imread(str(src / n)), (192, 128), interpolation=cv2.INTER_AREA)
        cv2.imwrite(str(d / n), small)
    r = cli("run", Path("pipelines/exposure-fusion.yaml").resolve(), d, "-o", tmp_path / "out")
    assert r.returncode == 0, r.stdout + r.stderr
    fused = read_png(tmp_path / "out" / "DSC_0060-DSC_0064_fused.png")
    assert fused.shape == (128, 192, 3) and fused.dtype == np.uint16


# -- item 8: whole-image models stay within a memory budget ---------------------------------------------------


def test_a_global_attention_model_tiles_when_the_whole_image_does_not_fit(tmp_path):
    """weather-starter (Histoformer: global attention, 'whole image' by default) gets large tiles with a wide
    overlap once its measured memory curve predicts more than the budget for the whole image."""
    import torch

    from restore.image import SRGB, Image, Metadata
    from restore.memory import curve_for
    from restore.metrics import psnr
    from restore.models import load_model
    from restore.pipeline.stages import MIN_GLOBAL_TILE, Context

    torch.set_num_threads(2)
    m = load_model("weather-starter")
    curve = curve_for(m, torch.device("cpu"), torch.float32)  # measured once, cached (the suite's own cache)
    assert curve is not None and curve.c >= 0
    src = cv2.imread(str(Path(__file__).resolve().parents[1] / "examples" / "chelsea.png"))[:, :, ::-1]
    img = Image(cv2.resize(src, (512, 384), interpolation=cv2.INTER_CUBIC).astype(np.float32) / 255, SRGB, Metadata(bit_depth=8))
    budget = int(curve.predict(320 * 320))  # fits a ~320 px tile, not the whole 512x384 image
    assert curve.predict(512 * 384) > budget
    spec = {"version": 1, "steps": [{"model": {"name": "weather-starter", "memory": str(budget), "threads": 2}}]}
    ctx = Context()
    out = load_pipeline(spec).process(img, ctx)
    assert out.pixels.shape == (384, 512, 3)
    (note,) = [n for n in ctx.notes if n.startswith("whole image")]
    tile = int(note.split("tiles of ")[1].split(" px")[0])
    overlap = int(note.split("overlap ")[1])
    assert MIN_GLOBAL_TILE <= tile <= 320 and overlap >= tile // 8 and overlap % 8 == 0
    # a budget below the smallest useful tile still gets MIN_GLOBAL_TILE (smaller tiles harm the photo)
    ctx_small = Context()
    load_pipeline({"version": 1, "steps": [{"model": {**spec["steps"][0]["model"], "memory": "1MB"}}]}).process(img, ctx_small)
    (note_small,) = [n for n in ctx_small.notes if n.startswith("whole image")]
    assert f"tiles of {MIN_GLOBAL_TILE} px" in note_small
    # the whole image, when it fits the budget, runs whole (no note), and the tiles stay close to it
    ctx2 = Context()
    whole = load_pipeline({"version": 1, "steps": [{"model": {**spec["steps"][0]["model"], "memory": "8GB"}}]}).process(img, ctx2)
    assert not [n for n in ctx2.notes if n.startswith("whole image")]
    assert psnr(out.pixels, whole.pixels, y_channel=False) > 30


# -- item 13: mislabelled files get the right reason, the path once ---------------------------------------


def test_mislabelled_files_are_named_by_what_they_hold(tmp_path):
    from restore.errors import InputError
    from restore.io import read

    d = tmp_path / "in"
    img = png(d / "ok.png", 1)
    ok, jpg = cv2.imencode(".jpg", img)
    (d / "png_named.jpg").write_bytes((d / "ok.png").read_bytes())
    (d / "jpeg_named.png").write_bytes(jpg.tobytes())
    dng = Path(__file__).resolve().parents[1] / "examples" / "coffee_raw.dng"
    (d / "dng_named.tif").write_bytes(dng.read_bytes())
    (d / "notes.png").write_text("shopping list: film, batteries\n")
    (d / "blank.jpg").write_bytes(b"")
    expected = {
        "png_named.jpg": "PNG data in a .jpg file (rename it .png)",
        "jpeg_named.png": "JPEG data in a .png file (rename it .jpg)",
        "dng_named.tif": "DNG (camera RAW) data in a .tif file",
        "notes.png": "not an image (text)",
        "blank.jpg": "empty file",
    }
    for name, reason in expected.items():
        with pytest.raises(InputError) as e:
            read(d / name)
        assert str(e.value).startswith(f"{d / name}: {reason}"), str(e.value)
    (tmp_path / "p.yaml").write_text(HALF.replace("{stem}_x.png", "{name}.png"))
    r = cli("run", tmp_path / "p.yaml", d, "-o", tmp_path / "out")
    assert r.returncode == 1 and "1 done, 0 skipped, 5 failed" in r.stdout
    for line in r.stdout.splitlines():
        for name in expected:
            if name in line:
                assert line.count(name) == 1, line  # each failure line names the path once


# -- items 14 and 15: validate finds every problem, with its line -----------------------------------------


def test_validate_checks_model_names_and_suggests_the_nearest(tmp_path):
    p = tmp_path / "p.yaml"
    p.write_text("version: 1\nsteps:\n  - model: {name: dat-light-x5}\n  - write: {path: '{stem}.png'}\n")
    r = cli("validate", p)
    assert r.returncode == 2 and "Traceback" not in r.stderr
    line = r.stderr.strip()
    assert line.startswith(f"error: {p}:3: steps[0].model.name: unknown model 'dat-light-x5' (did you mean dat-light-x")
    assert "dat-light-x2" in line and len(line) < 300  # not the whole catalogue
    p.write_text("version: 1\nsteps:\n  - model: {name: weights/missing.safetensors}\n  - write: {path: '{stem}.png'}\n")
    r = cli("validate", p)
    assert r.returncode == 2 and ":3: steps[0].model.name: no such checkpoint file 'weights/missing.safetensors'" in r.stderr


def test_options_that_do_not_apply_are_refused_and_every_error_is_reported(tmp_path):
    p = tmp_path / "p.yaml"
    p.write_text("version: 1\nsteps:\n  - resize: {scale: -1}\n"
                 "  - write: {path: '{stem}.png', dtype: half, compression: zip, quality: 80}\n"
                 "  - write: {path: '{stem}.jpg', bit_depth: 16}\n  - write: {path: '{stem}.exr', compression: none}\n")
    r = cli("validate", p)
    assert r.returncode == 2 and "Traceback" not in r.stderr
    err = r.stderr
    assert "(3 problems)" in err
    assert f"{p}:3: steps[0].resize.scale" in err
    assert f"{p}:4: steps[1].write: " in err and "dtype does not apply to .png output" in err
    assert "quality does not apply to .png output" in err and "compression 'zip' is not one .png takes" in err
    assert f"{p}:5: steps[2].write: bit_depth 16 is not one .jpg takes (8)" in err
    assert "steps[3]" not in err  # EXR compression none is valid ...
    from restore.image import LINEAR_REC709, Image, Metadata
    from restore.io import read, write

    img = Image(np.full((4, 4, 3), 0.5, np.float32), LINEAR_REC709, Metadata())
    write(img, tmp_path / "none.exr", compression="none")  # ... and works
    assert np.allclose(read(tmp_path / "none.exr").pixels, 0.5, atol=1e-3)


# -- items 16 and 17: the Python API and the small things -------------------------------------------------


def test_float_input_above_one_is_refused_without_an_encoding_never_clipped():
    p = load_pipeline({"version": 1, "steps": [{"resize": {"scale": 0.5}}]})
    hdr = np.full((8, 8, 3), 3.0, np.float32)
    with pytest.raises(ValueError, match=r"encoding=restore\.LINEAR_REC709"):
        p(hdr)
    out = p(hdr, encoding=restore.LINEAR_REC709)
    assert out.dtype == np.float32 and np.allclose(out, 3.0, rtol=1e-5)  # kept, not clipped
    assert p(np.full((8, 8, 3), 0.5, np.float32)).max() <= 1.0  # sRGB [0, 1] float input as before


def test_an_image_prints_as_a_summary_and_info_prints_plain_values():
    img = restore.read(Path(__file__).resolve().parents[1] / "examples" / "coffee_raw.dng")
    text = repr(img)
    assert text.startswith("Image(192x128x3 float32, linear/rec709/scene-referred, range [") and "coffee_raw.dng" in text
    assert len(text) < 200 and "array(" not in text and "array(" not in repr(img.meta) and len(repr(img.meta)) < 600
    r = cli("info", Path(__file__).resolve().parents[1] / "examples" / "coffee_raw.dng")
    assert r.returncode == 0 and "np.float" not in r.stdout and "array(" not in r.stdout and "dtype=" not in r.stdout
    assert "white_balance: [2.0, 1.0, 1.42857, 0.0]" in r.stdout


def test_help_tables_and_readme_cover_what_ships():
    r = cli("eval", "--help")
    assert "--json" in r.stdout and "mean_psnr" in r.stdout
    r = cli("models")  # piped: a plain table, one line per entry, nothing wrapped
    from restore.models import catalog

    lines = r.stdout.splitlines()
    for e in catalog():
        (line,) = [x for x in lines if x.startswith(e.name + " ")]
        assert e.when.split()[-1] in line  # the whole row on one line
    readme = (Path(__file__).resolve().parents[1] / "README.md").read_text()
    for p in sorted((Path(__file__).resolve().parents[1] / "pipelines").glob("*.yaml")):
        assert f"pipelines/{p.name}" in readme or f"`{p.name}`" in readme, f"README does not list {p.name}"
