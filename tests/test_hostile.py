"""Hostile and odd inputs (issue 17): names that are not UTF-8 or hold control characters, touched and
re-copied files in the watch daemon, and the other findings of the fuzz campaign."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import threading
import time
from pathlib import Path

import cv2
import numpy as np

from restore.journal import Journal
from restore.pipeline import load_pipeline
from restore.text import printable
from restore.watch import LOG_NAME, Watcher, WatchOptions

FAST = {"version": 1, "name": "fast", "steps": [{"resize": {"scale": 0.5}}, {"write": {"path": "{stem}.png"}}]}
ODD = [os.fsdecode(b"bad_\xff.png"), os.fsdecode(b"latin1_caf\xe9.png"), "esc_\x1b[31mred.png"]


def png_bytes(seed: int, size: int = 16) -> bytes:
    img = (np.random.default_rng(seed).random((size, size, 3)) * 255).astype(np.uint8)
    return cv2.imencode(".png", img)[1].tobytes()


def cli(*args, timeout=300):
    return subprocess.run([sys.executable, "-m", "restore.cli", *map(str, args)], capture_output=True, timeout=timeout)


def test_names_that_are_not_utf8_are_processed_and_printed_safely(tmp_path):
    d = tmp_path / "in"
    d.mkdir()
    for i, n in enumerate(ODD + ["ok.png"]):
        (d / n).write_bytes(png_bytes(i))
    (tmp_path / "p.yaml").write_text("version: 1\nname: t\nsteps:\n  - resize: {scale: 0.5}\n  - write: {path: '{stem}.exr'}\n")
    r = cli("run", tmp_path / "p.yaml", d, "-o", tmp_path / "out")  # EXR: OpenEXR takes only UTF-8 names
    out = r.stdout.decode("utf-8")  # everything printed is valid UTF-8 ...
    assert r.returncode == 0 and "4 done, 0 skipped, 0 failed" in out, out + r.stderr.decode("utf-8", "replace")
    assert "\x1b" not in out and "bad_\\xff.png" in out and "esc_\\x1b[31mred.png" in out  # ... and escapes what is not
    names = sorted(os.fsencode(p.name) for p in (tmp_path / "out").iterdir() if not p.name.startswith("."))
    assert names == sorted([b"bad_\xff.exr", b"esc_\x1b[31mred.exr", b"latin1_caf\xe9.exr", b"ok.exr"])
    with Journal(tmp_path / "out" / ".restore-journal.sqlite", exclusive=False) as j:  # paths round-trip
        assert sorted(Path(e.path).name for e in j.entries("done")) == sorted(ODD + ["ok.png"])
    r = cli("run", tmp_path / "p.yaml", d, "-o", tmp_path / "out")
    assert "0 done, 4 skipped" in r.stdout.decode()
    r = cli("info", *[d / n for n in ODD])
    assert r.returncode == 0 and "\x1b" not in r.stdout.decode("utf-8")


def log_lines(out: Path) -> list[str]:
    log = out / LOG_NAME
    return log.read_text(encoding="utf-8").splitlines() if log.exists() else []


def count(lines: list[str], what: str, name: str) -> int:
    """Log lines saying ``what`` of ``name`` (the log escapes names: printable())."""
    shown = re.escape(printable(name))
    return sum(1 for x in lines if re.search(rf" INFO {what} (\S*/)?{shown}(:| ->|$)", x))


def test_watch_burst_with_touched_recopied_replaced_and_odd_named_files(tmp_path):
    """Each file is processed exactly as often as its content changed; a touched or re-copied file (same
    bytes) is skipped once, its new mtime recorded, and the log is quiet within two settle periods."""
    d, out = tmp_path / "in", tmp_path / "out"
    d.mkdir()
    names = [f"f{i:02d}.png" for i in range(24)] + ODD
    for i, n in enumerate(names):
        (d / n).write_bytes(png_bytes(i))
    settle = 0.3
    w = Watcher(load_pipeline(FAST), d, out, WatchOptions(settle_s=settle, rescan_s=0.5, timeout_s=None, poll_s=0.05))
    th = threading.Thread(target=w.run)
    th.start()
    try:
        deadline = time.monotonic() + 60
        while len(w.report.done) < len(names) and time.monotonic() < deadline:
            time.sleep(0.05)
        assert len(w.report.done) == len(names)
        touched, recopied, replaced = names[0:4], names[4:8] + ODD[:1], names[8:12] + ODD[1:2]
        now = time.time() + 5
        for n in touched:
            os.utime(d / n, (now, now))
        for n in recopied:  # the same bytes written again
            data = (d / n).read_bytes()
            tmp = tmp_path / "copy.png"
            tmp.write_bytes(data)
            shutil.copyfile(tmp, d / n)
        for k, n in enumerate(replaced):
            (d / n).write_bytes(png_bytes(1000 + k))
        deadline = time.monotonic() + 60
        while len(w.report.done) < len(names) + len(replaced) and time.monotonic() < deadline:
            time.sleep(0.05)
        time.sleep(2 * settle + 0.6)  # settled, a rescan included
        before = len(log_lines(out))
        time.sleep(2 * settle + 0.6)
        quiet = log_lines(out)[before:]
    finally:
        w.stop()
        th.join(30)
    lines = log_lines(out)
    assert not quiet, quiet  # nothing more to say once everything settled
    for n in names:
        expected = 2 if n in replaced else 1
        assert count(lines, "done", n) == expected, (n, [x for x in lines if printable(n) in x])
    for n in touched + recopied:
        assert count(lines, "skipped", n) == 1, (n, [x for x in lines if printable(n) in x])
    with Journal(out / ".restore-journal.sqlite", exclusive=False) as j:
        rows = {Path(e.path).name: e for e in j.entries()}
    assert all(rows[n].state == "done" for n in names)
    for n in touched:  # the new mtime is recorded: a restart does not hash it again
        assert rows[n].members[0].mtime_ns == (d / n).stat().st_mtime_ns
    # a restart is quiet too: nothing runs, nothing is skipped again
    w2 = Watcher(load_pipeline(FAST), d, out, WatchOptions(once=True, settle_s=settle, timeout_s=None, poll_s=0.05))
    rep = w2.run()
    assert not rep.done and not rep.failed and rep.skipped == 0


# -- TIFF: every sample format and layout, truncation is an error ---------------------------------------------


def test_tiff_sample_formats_layouts_and_photometrics(tmp_path):
    import tifffile

    from restore.errors import InputError
    from restore.image import LINEAR_REC709, SRGB, Image, Metadata
    from restore.io import read, write

    rng = np.random.default_rng(0)
    ref = rng.random((6, 5, 3))
    cases = {
        "u8": (np.round(ref * 255).astype(np.uint8), 1 / 255, SRGB),
        "u16": (np.round(ref * 65535).astype(np.uint16), 1 / 65535, SRGB),
        "u32": (np.round(ref * 4294967295).astype(np.uint32), 1e-6, SRGB),
        "i8": (np.round(ref * 127).astype(np.int8), 1 / 127, SRGB),
        "i16": (np.round(ref * 32767).astype(np.int16), 1 / 32767, SRGB),
        "i32": (np.round(ref * 2147483647).astype(np.int32), 1e-6, SRGB),
        "f16": (ref.astype(np.float16), 1e-3, LINEAR_REC709),
        "f32": (ref.astype(np.float32), 1e-6, LINEAR_REC709),
        "f64": (ref.astype(np.float64), 1e-6, LINEAR_REC709),
    }
    for name, (data, tol, enc) in cases.items():
        for planar in ("contig", "separate"):
            p = tmp_path / f"{name}_{planar}.tif"
            tifffile.imwrite(p, data if planar == "contig" else np.moveaxis(data, -1, 0), photometric="rgb", planarconfig=planar)
            img = read(p)
            assert img.encoding == enc and img.pixels.shape == (6, 5, 3), (name, planar)
            assert np.abs(img.pixels - ref).max() <= tol * 1.01, (name, planar)
    # restore's own float output reads back as the linear values it holds (> 1 kept)
    hdr = Image((ref * 8).astype(np.float32), LINEAR_REC709, Metadata())
    write(hdr, tmp_path / "own.tif", bit_depth=32)
    back = read(tmp_path / "own.tif")
    assert back.encoding == LINEAR_REC709 and np.allclose(back.pixels, hdr.pixels)
    # grey MinIsWhite, palette, CMYK, RGB + alpha
    grey = np.round(ref[:, :, 0] * 255).astype(np.uint8)
    tifffile.imwrite(tmp_path / "white.tif", grey, photometric="miniswhite")
    assert np.allclose(read(tmp_path / "white.tif").pixels[:, :, 0], 1 - grey / 255, atol=1e-6)
    cmap = np.zeros((3, 256), np.uint16)
    cmap[0, 7], cmap[1, 7], cmap[2, 7] = 65535, 32768, 0
    tifffile.imwrite(tmp_path / "pal.tif", np.full((4, 4), 7, np.uint8), photometric="palette", colormap=cmap)
    assert np.allclose(read(tmp_path / "pal.tif").pixels[0, 0], [1.0, 32768 / 65535, 0.0], atol=1e-6)
    cmyk = np.zeros((4, 4, 4), np.uint8)
    cmyk[..., 0] = 255  # full cyan: red goes
    tifffile.imwrite(tmp_path / "cmyk.tif", cmyk, photometric="separated")
    assert np.allclose(read(tmp_path / "cmyk.tif").pixels[0, 0], [0.0, 1.0, 1.0])
    rgba = np.round(rng.random((4, 4, 4)) * 65535).astype(np.uint16)
    tifffile.imwrite(tmp_path / "rgba16.tif", rgba, photometric="rgb", extrasamples=["unassalpha"])
    assert read(tmp_path / "rgba16.tif").pixels.shape == (4, 4, 4)
    # LZW (needs imagecodecs in tifffile): OpenCV decodes it
    assert cv2.imwrite(str(tmp_path / "lzw.tif"), np.round(ref * 255).astype(np.uint8)[:, :, ::-1])
    assert np.abs(read(tmp_path / "lzw.tif").pixels - ref).max() <= 1 / 255 * 1.01
    # truncated strips of a planar file are an error, not an image with zeros
    big = np.round(rng.random((64, 48, 3)) * 65535).astype(np.uint16)
    tifffile.imwrite(tmp_path / "full.tif", np.moveaxis(big, -1, 0), photometric="rgb", planarconfig="separate", rowsperstrip=8)
    data = (tmp_path / "full.tif").read_bytes()
    (tmp_path / "cut.tif").write_bytes(data[: len(data) * 2 // 3])
    try:
        read(tmp_path / "cut.tif")
        raise AssertionError("a truncated TIFF was read")
    except InputError as e:
        assert "truncated TIFF" in str(e) and "cut.tif" in str(e)


def test_one_time_warm_ups_do_not_count_against_the_stall_limit(tmp_path):
    """`compile: true` compiles for each new tile shape (seconds to minutes on a CPU) before that tile reports
    anything: a stall limit shorter than the compile must not fail the file (nor every file after it)."""
    import torch

    from tests.test_compile import tiny_compact

    if not hasattr(torch, "compile"):
        import pytest

        pytest.skip("torch.compile needs torch >= 2.0")
    w = tiny_compact(tmp_path / "t.safetensors", feat=8, convs=2)
    (tmp_path / "p.yaml").write_text(f"version: 1\nname: t\nsteps:\n  - model: {{name: {w}, tile: 48, overlap: 8, compile: true, "
                                     "precision: fp32, threads: 1}\n  - write: {path: '{stem}_c.png'}\n")
    d = tmp_path / "in"
    d.mkdir()
    for i in range(2):
        (d / f"p{i}.png").write_bytes(png_bytes(i, 80))
    t0 = time.monotonic()
    r = cli("run", tmp_path / "p.yaml", d, "-o", tmp_path / "out", "--timeout", "2", timeout=600)
    took = time.monotonic() - t0
    text = r.stdout.decode() + r.stderr.decode()
    assert r.returncode == 0 and "2 done, 0 skipped, 0 failed" in text, text
    assert took < 600


def test_decompression_bombs_under_the_pixel_limit_are_refused_by_memory(tmp_path):
    """Headers claiming up to 324 MP (under the 400 MP limit) in a process limited to 3 GiB of address space:
    refused in one line before decoding, the process stays small."""
    import resource

    from tests.test_malformed import _patch_jpeg_size, _png_header

    small = cv2.imencode(".jpg", np.zeros((8, 8, 3), np.uint8))[1].tobytes()
    bombs = {"b.jpg": _patch_jpeg_size(small, 18000, 18000), "b.png": _png_header(15000, 15000)}
    for n, data in bombs.items():
        (tmp_path / n).write_bytes(data)

    def limit():
        resource.setrlimit(resource.RLIMIT_AS, (3 << 30, 3 << 30))

    for n in bombs:  # (the address-space limit bounds the process: a decode would fail with another message)
        r = subprocess.run([sys.executable, "-m", "restore.cli", "info", str(tmp_path / n)], capture_output=True, text=True,
                           timeout=120, preexec_fn=limit)
        assert r.returncode == 1 and "Traceback" not in r.stderr, r.stderr
        assert f"{tmp_path / n}: image of" in r.stderr and "GiB available; refused before decoding" in r.stderr
        assert len(r.stderr.strip().splitlines()) == 1


def test_hostile_pipelines_and_options_get_one_line(tmp_path):
    """Each of these once gave a traceback, or passed validate and then failed every file."""
    cases = {
        "nul.yaml": ("version: 1\nsteps: [{write: {path: \"a\\0b{stem}.png\"}}]\n", "contains a control character"),
        "latin1.yaml": (b"version: 1\nname: caf\xe9\nsteps: [{write: {path: '{stem}.png'}}]\n", ":2: not UTF-8 text (byte 0xe9)"),
        "deep.yaml": ("version: 1\nsteps: " + "[" * 5000 + "]" * 5000 + "\n", "nested too deeply"),
        "wb.yaml": ("version: 1\nsteps: [{develop: {white_balance: [2]}}, {write: {path: '{stem}.exr'}}]\n", "give 3 (R, G, B) or 4"),
        "wbnan.yaml": ("version: 1\nsteps: [{develop: {white_balance: [1, .nan, 1]}}, {write: {path: '{stem}.exr'}}]\n", "finite numbers above 0"),
        "wbneg.yaml": ("version: 1\nsteps: [{develop: {white_balance: [1, -2, 1]}}, {write: {path: '{stem}.exr'}}]\n", "finite numbers above 0"),
        "wbhuge.yaml": ("version: 1\nsteps: [{develop: {white_balance: [1, 1e308, 1]}}, {write: {path: '{stem}.exr'}}]\n", "at most 100"),
        "tpu.yaml": ("version: 1\nsteps: [{model: {name: dat-light-x2, device: tpu}}, {write: {path: '{stem}.png'}}]\n", "device 'tpu'"),
        "meta.yaml": ("version: 1\nsteps: [{model: {name: dat-light-x2, device: meta}}, {write: {path: '{stem}.png'}}]\n", "device 'meta'"),
        "vtrue.yaml": ("version: true\nsteps: [{write: {path: '{stem}.png'}}]\n", "unsupported pipeline version True"),
        "vfloat.yaml": ("version: 1.0\nsteps: [{write: {path: '{stem}.png'}}]\n", "unsupported pipeline version 1.0"),
        "wtrue.yaml": ("version: 1\nsteps: [{resize: {width: true}}, {write: {path: '{stem}.png'}}]\n", "width: true is not a valid value"),
        "wide.yaml": ("version: 1\nsteps: [{resize: {width: 10000000}}, {write: {path: '{stem}.png'}}]\n", "less than or equal to 100000"),
        "nowrite.yaml": ("version: 1\nsteps: [{resize: {scale: 0.5}}]\n", "no write step, so nothing would be saved"),
        "spec.yaml": ("version: 1\nsteps: [{write: {path: '{stem:>999999999}.exr'}}]\n", "takes no format spec"),
    }
    for name, (text, expected) in cases.items():
        p = tmp_path / name
        p.write_bytes(text if isinstance(text, bytes) else text.encode())
        r = cli("validate", p)
        err = r.stderr.decode()
        assert r.returncode == 2 and "Traceback" not in err and expected in err, (name, err)
        assert err.startswith(f"error: {p}"), (name, err)
    # UTF-16 with a BOM is YAML too
    (tmp_path / "u16.yaml").write_text("version: 1\nsteps: [{write: {path: '{stem}.png'}}]\n", encoding="utf-16")
    assert cli("validate", tmp_path / "u16.yaml").returncode == 0
    # run-time: a device this machine lacks, an output folder that cannot be made, a resize past the pixel limit
    d = tmp_path / "in"
    d.mkdir()
    (d / "a.png").write_bytes(png_bytes(1))
    (tmp_path / "p.yaml").write_text("version: 1\nsteps: [{resize: {scale: 0.5}}, {write: {path: '{stem}.png'}}]\n")
    r = cli("run", tmp_path / "p.yaml", d, "-o", tmp_path / "o", "--device", "cuda:99")
    assert r.returncode == 2 and "device 'cuda:99': this machine has" in r.stderr.decode()
    (tmp_path / "afile").write_text("x")
    r = cli("run", tmp_path / "p.yaml", d, "-o", tmp_path / "afile" / "sub")
    err = r.stderr.decode()
    assert r.returncode == 2 and "Traceback" not in err and "cannot create the output folder" in err, err
    (tmp_path / "big.yaml").write_text("version: 1\nsteps: [{resize: {width: 90000, height: 90000}}, {write: {path: '{stem}.png'}}]\n")
    r = cli("run", tmp_path / "big.yaml", d, "-o", tmp_path / "o2")
    assert r.returncode == 1 and "resize to 90000x90000 (8100 MP) exceeds the limit" in r.stdout.decode()


def test_disk_full_is_retried_by_a_plain_rerun_and_named_by_the_final_file(tmp_path, monkeypatch):
    import errno

    import restore.io as rio

    d = tmp_path / "in"
    d.mkdir()
    (d / "a.png").write_bytes(png_bytes(1))
    pipe = load_pipeline(FAST)
    real = rio.write_png

    def full(image, path, *a, **k):
        Path(path).write_bytes(b"partial")
        raise OSError(errno.ENOSPC, "No space left on device", str(path))

    monkeypatch.setattr(rio, "write_png", full)
    report = pipe.run([d / "a.png"], tmp_path / "out", journal=True)
    (r,) = report.results
    out_png = tmp_path / "out" / "a.png"
    assert r.status == "failed" and r.error == f"{d / 'a.png'}: {out_png}: cannot write (No space left on device) (retried on the next run)"
    assert ".restore-tmp" not in r.error and not [p for p in (tmp_path / "out").iterdir() if p.suffix == ".png"]
    monkeypatch.setattr(rio, "write_png", real)  # space freed
    report = pipe.run([d / "a.png"], tmp_path / "out", journal=True)  # no --retry-failed needed
    assert [x.status for x in report.results] == ["done"] and (tmp_path / "out" / "a.png").is_file()


def test_radiance_hdr_round_trip_and_no_journal_still_locks(tmp_path):
    from restore.image import LINEAR_REC709, Image, Metadata
    from restore.io import read, write
    from restore.journal import FolderLock, JournalError

    rad = (np.random.default_rng(0).random((6, 9, 3)) * 50).astype(np.float32)  # radiance far above 1
    write(Image(rad, LINEAR_REC709, Metadata()), tmp_path / "scene.hdr")
    back = read(tmp_path / "scene.hdr")
    assert back.encoding == LINEAR_REC709 and back.pixels.shape == (6, 9, 3)
    # RGBE: 8-bit mantissas under one shared exponent per pixel, so a component's error is bounded by a
    # step of the pixel's largest component (2**e / 256 <= max * 2**-7), whether the encoder rounds or truncates
    err = np.abs(back.pixels.astype(np.float64) - rad)
    assert (err <= rad.max(axis=2, keepdims=True) * 2.0 ** -7 + 1e-6).all(), err.max()
    # --no-journal: the output folder is still locked against a second batch
    (tmp_path / "out").mkdir()
    lock = FolderLock(tmp_path / "out")  # another batch holds the folder
    try:
        d = tmp_path / "in"
        d.mkdir()
        (d / "a.png").write_bytes(png_bytes(1))
        (tmp_path / "p.yaml").write_text("version: 1\nsteps: [{resize: {scale: 0.5}}, {write: {path: '{stem}.png'}}]\n")
        r = cli("run", tmp_path / "p.yaml", d, "-o", tmp_path / "out", "--no-journal")
        assert r.returncode == 2 and "another restore run/watch" in r.stderr.decode() and "is working on this output folder" in r.stderr.decode()
    finally:
        lock.release()
    try:
        FolderLock(tmp_path / "out").release()
    except JournalError:
        raise AssertionError("the lock was not released")
