"""Hostile and broken inputs: a generated corpus of >= 300 malformed files, decompression bombs, NaN/Inf EXR, security checks.

The corpus is generated in ``tmp_path`` from a few good files: truncations
(PNG, JPEG, TIFF, EXR, and RAW under .dng/.nef/.cr2 names), garbage with and
without a valid signature, zero-byte files for every suffix the reader takes,
wrong extensions (a JPEG named .png, a PNG named .exr ...), NaN/Inf EXR,
PNG CRC corruption and huge-dimension headers.  Mixed with good files and run
through ``restore run`` (with its per-file time limit): zero uncaught
exceptions, zero hangs, each bad file reported by name with a reason, every
good file processed.
"""

import os
import struct
import subprocess
import sys
import time
from pathlib import Path

import cv2
import numpy as np
import OpenEXR
import pytest
import tifffile
import torch

from restore.errors import InputError, ModelError, PipelineError
from restore.io import READ_SUFFIXES, read
from restore.pipeline import collect_inputs, load_pipeline

ROOT = Path(__file__).resolve().parents[1]
DNG = ROOT / "examples" / "coffee_raw.dng"
FAST = {"version": 1, "name": "fast", "steps": [{"resize": {"scale": 0.5, "filter": "area"}}, {"write": {"path": "{name}.png"}}]}  # area: no overshoot above 1 for EXR inputs


def _exr(path: Path, px: np.ndarray, half: bool = False) -> Path:
    with np.errstate(over="ignore"):  # values above 65504 become +inf in half: wanted for the Inf cases
        px = px.astype(np.float16 if half else np.float32)
    OpenEXR.File({"compression": OpenEXR.ZIP_COMPRESSION, "type": OpenEXR.scanlineimage}, {"RGB": px}).write(str(path))
    return path


def _tiff_header(w: int, h: int) -> bytes:
    """A minimal uncompressed 8-bit grey TIFF claiming w x h (pixel data: 16 bytes)."""
    entries = [(256, 4, 1, w), (257, 4, 1, h), (258, 3, 1, 8), (259, 3, 1, 1), (262, 3, 1, 1), (273, 4, 1, 8 + 2 + 9 * 12 + 4), (277, 3, 1, 1), (278, 4, 1, h), (279, 4, 1, 16)]
    b = b"II*\x00" + struct.pack("<I", 8) + struct.pack("<H", len(entries))
    for code, typ, cnt, val in entries:
        b += struct.pack("<HHI", code, typ, cnt) + (struct.pack("<HH", val, 0) if typ == 3 else struct.pack("<I", val))
    return b + struct.pack("<I", 0) + b"\x00" * 16


def _png_header(w: int, h: int) -> bytes:
    ihdr = struct.pack(">IIBBBBB", w, h, 8, 2, 0, 0, 0)
    chunk = lambda t, p: struct.pack(">I", len(p)) + t + p + struct.pack(">I", __import__("zlib").crc32(t + p) & 0xFFFFFFFF)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", __import__("zlib").compress(b"\x00" * 64)) + chunk(b"IEND", b"")


def _patch_jpeg_size(data: bytes, w: int, h: int) -> bytes:
    b = bytearray(data)
    i = b.find(b"\xff\xc0")
    b[i + 5 : i + 9] = struct.pack(">HH", h, w)
    return bytes(b)


def _patch_exr_window(data: bytes, x1: int, y1: int) -> bytes:
    b = bytearray(data)
    for name in (b"dataWindow\x00box2i\x00", b"displayWindow\x00box2i\x00"):
        i = b.find(name) + len(name) + 4
        b[i : i + 16] = struct.pack("<iiii", 0, 0, x1, y1)
    return bytes(b)


def _patch_dng_size(data: bytes, w: int, h: int) -> bytes:
    b = bytearray(data)
    with tifffile.TiffFile(DNG) as tf:
        tags = tf.pages[0].tags
        for code, v in ((256, w), (257, h)):
            t = tags[code]
            if t.dtype == 3:
                b[t.offset + 8 : t.offset + 10] = struct.pack("<H", v)
            else:
                b[t.offset + 8 : t.offset + 12] = struct.pack("<I", v)
    return bytes(b)


def make_corpus(root: Path) -> tuple[list[Path], list[Path]]:
    """Write good and malformed files into ``root``; return ``(good, bad)``."""
    root.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    img = (rng.random((12, 16, 3)) * 255).astype(np.uint8)
    good = []

    def put(name: str, data: bytes, into: list) -> Path:
        p = root / name
        p.write_bytes(data)
        into.append(p)
        return p

    # good files (kept as bytes to derive the bad ones)
    src = {}
    for k in range(2):
        im = np.roll(img, k, axis=1)
        src["png"] = cv2.imencode(".png", im)[1].tobytes()
        src["jpg"] = cv2.imencode(".jpg", im)[1].tobytes()
        p = root / f"good{k}.tif"
        tifffile.imwrite(p, im)
        src["tif"] = p.read_bytes()
        good.append(p)
        src["exr"] = _exr(root / f"good{k}.exr", im / 255.0).read_bytes()
        good.append(root / f"good{k}.exr")
        put(f"good{k}.png", src["png"], good)
        put(f"good{k}.jpg", src["jpg"], good)
    put("good16.png", cv2.imencode(".png", img.astype(np.uint16) * 257)[1].tobytes(), good)
    src["dng"] = DNG.read_bytes()
    put("good.dng", src["dng"], good)

    bad = []
    # truncations at many points, RAW under three camera names
    for kind, data in src.items():
        n = len(data)
        cuts = sorted({1, 4, 8, 12, 16, 24, 33, 48, 64, 100, 200, n // 100, n // 50, n // 20, n // 10, n // 5, n // 4, n // 3, n // 2, 2 * n // 3, 3 * n // 4, 4 * n // 5, 9 * n // 10, n - 64, n - 16, n - 2, n - 1})
        names = ["dng", "nef", "cr2"] if kind == "dng" else [kind]
        for c in (c for c in cuts if 0 < c < n):
            for ext in names:
                put(f"cut{c}.{ext}", data[:c], bad)
    # garbage, without and with a valid signature
    magic = {"png": b"\x89PNG\r\n\x1a\n", "jpg": b"\xff\xd8\xff\xe0", "jpeg": b"\xff\xd8\xff\xdb", "tif": b"II*\x00", "tiff": b"MM\x00*", "exr": b"\x76\x2f\x31\x01", "dng": b"II*\x00", "nef": b"MM\x00*", "cr2": b"II*\x00\x10\x00\x00\x00CR", "arw": b"II*\x00"}
    for ext, sig in magic.items():
        for size in (1, 100, 5000):
            put(f"garbage{size}.{ext}", rng.integers(0, 256, size, dtype=np.uint8).tobytes(), bad)
            put(f"magic{size}.{ext}", sig + rng.integers(0, 256, size, dtype=np.uint8).tobytes(), bad)
    # zero-byte files under every suffix the reader takes
    for suffix in sorted(READ_SUFFIXES):
        put(f"empty{suffix}", b"", bad)
    # wrong extensions
    for name, data in (("jpeg_as.png", src["jpg"]), ("png_as.exr", src["png"]), ("png_as.dng", src["png"]), ("jpeg_as.exr", src["jpg"]), ("exr_as.png", src["exr"]),
                       ("exr_as.jpg", src["exr"]), ("exr_as.tif", src["exr"]), ("png_as.nef", src["png"]), ("jpeg_as.cr2", src["jpg"]), ("tif_as.exr", src["tif"])):
        put(name, data, bad)
    # NaN / Inf EXR
    base = img / 255.0
    for name, fill in (("nan1", [np.nan]), ("nanall", None), ("inf", [np.inf]), ("neginf", [-np.inf]), ("mixed", [np.nan, np.inf, -np.inf])):
        px = np.full_like(base, np.nan) if fill is None else base.copy()
        if fill is not None:
            for k, v in enumerate(fill):
                px[k, k, 0] = v
        _exr(root / f"{name}.exr", px)
        bad.append(root / f"{name}.exr")
    px = base.copy()
    px[0, 0] = 1e6  # above the half-float range: stored as +inf
    bad.append(_exr(root / "halfinf.exr", px, half=True))
    # PNG CRC corruption (a flipped byte anywhere after the signature is caught by the chunk CRCs)
    png_data = src["png"]
    for k, pos in enumerate(np.linspace(12, len(png_data) - 5, 16).astype(int)):
        b = bytearray(png_data)
        b[pos] ^= 0x55
        put(f"flip{k}.png", bytes(b), bad)
    # huge-dimension headers (and an impossible zero size)
    put("huge.png", _png_header(100_000, 100_000), bad)
    put("huge_wide.png", _png_header(2_000_000, 300), bad)
    put("zero.png", _png_header(0, 0), bad)
    put("huge.tif", _tiff_header(100_000, 100_000), bad)
    put("huge.jpg", _patch_jpeg_size(src["jpg"], 65_000, 65_000), bad)
    put("huge.exr", _patch_exr_window(src["exr"], 99_999, 99_999), bad)
    for ext in ("dng", "nef", "cr2"):
        put(f"huge.{ext}", _patch_dng_size(src["dng"], 60_000, 60_000), bad)
    return good, bad


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    root = tmp_path_factory.mktemp("corpus")
    good, bad = make_corpus(root / "in")
    return root, good, bad


def test_corpus_is_big_and_every_bad_file_is_refused_by_the_reader(corpus):
    root, good, bad = corpus
    assert len(bad) >= 300 and len(good) >= 10
    for p in good:
        assert read(p).pixels.size > 0
    for p in bad:
        t0 = time.monotonic()
        with pytest.raises(InputError) as e:
            read(p)
        assert str(p) in str(e.value) and len(e.value.problem) > 5
        assert time.monotonic() - t0 < 5, p


def test_corpus_through_restore_run(corpus):
    root, good, bad = corpus
    out = root / "out"
    (root / "p.yaml").write_text("version: 1\nname: fast\nsteps:\n  - resize: {scale: 0.5, filter: area}\n  - write: {path: '{name}.png'}\n")
    t0 = time.monotonic()
    r = subprocess.run([sys.executable, "-m", "restore.cli", "run", root / "p.yaml", root / "in", "-o", out, "--timeout", "30"], capture_output=True, text=True, timeout=600)
    assert time.monotonic() - t0 < 300
    text = r.stdout + r.stderr
    assert r.returncode == 1 and "Traceback" not in text and "timed out" not in text, text[-3000:]
    assert f"{len(good)} done, 0 skipped, {len(bad)} failed" in r.stdout
    failed_lines = [line for line in r.stdout.splitlines() if line.startswith("  failed: ")]
    assert len(failed_lines) == len(bad)
    for p in bad:
        line = next((x for x in failed_lines if f"{p}: " in x), None)
        assert line is not None, f"{p.name} not reported"
        assert len(line.split(f"{p}: ", 1)[1]) > 5  # a reason
    assert sorted(x.name for x in out.glob("*.png")) == sorted(f"{p.name}.png" for p in good)
    for p in good:
        assert cv2.imread(str(out / f"{p.name}.png")) is not None


def test_corpus_through_the_api_and_watch_once(corpus, tmp_path):
    from restore.watch import Watcher, WatchOptions

    root, good, bad = corpus
    pipe = load_pipeline(FAST)
    files = collect_inputs([root / "in"])
    report = pipe.run(files, tmp_path / "api")
    assert report.count("done") == len(good) and report.count("failed") == len(bad)
    # the watch daemon on a sample: every bad file fails for good with its reason, no retries of decode errors
    sample = tmp_path / "watch"
    sample.mkdir()
    picked = good[:4] + bad[::10]
    for p in picked:
        (sample / p.name).write_bytes(p.read_bytes())
    w = Watcher(pipe, sample, tmp_path / "wout", WatchOptions(once=True, settle_s=0.1, timeout_s=None, poll_s=0.02))
    rep = w.run()
    assert sorted(r.input.name for r in rep.done) == sorted(p.name for p in good[:4])
    assert sorted(r.input.name for r in rep.failed) == sorted(p.name for p in bad[::10])
    for r in rep.failed:
        assert r.input.name in r.error


@pytest.mark.parametrize("name,make", [
    ("png", lambda: _png_header(100_000, 100_000)),
    ("tif", lambda: _tiff_header(100_000, 100_000)),
    ("jpg", lambda: _patch_jpeg_size(cv2.imencode(".jpg", np.zeros((8, 8, 3), np.uint8))[1].tobytes(), 65_000, 65_000)),
    ("exr", None),
    ("dng", lambda: _patch_dng_size(DNG.read_bytes(), 60_000, 60_000)),
    ("nef", lambda: _patch_dng_size(DNG.read_bytes(), 60_000, 60_000)),
])
def test_decompression_bombs_refused_from_the_header(tmp_path, name, make):
    p = tmp_path / f"bomb.{name}"
    if make is None:
        data = _exr(tmp_path / "small.exr", np.zeros((8, 8, 3))).read_bytes()
        p.write_bytes(_patch_exr_window(data, 99_999, 99_999))
    else:
        p.write_bytes(make())
    t0 = time.monotonic()
    with pytest.raises(InputError, match="exceeds the limit of 400 MP.*refused before decoding"):
        read(p)
    assert time.monotonic() - t0 < 2  # nothing of the claimed size was allocated or decoded


def test_nan_and_inf_exr_are_refused_with_counts(tmp_path):
    px = np.full((4, 4, 3), 0.5, np.float32)
    px[0, 0, 0], px[1, 1, 1], px[2, 2, 2] = np.nan, np.inf, -np.inf
    with pytest.raises(InputError, match=r"bad.exr: contains 1 NaN and 2 infinite sample values; refused"):
        read(_exr(tmp_path / "bad.exr", px))
    assert np.isfinite(read(_exr(tmp_path / "ok.exr", np.full((4, 4, 3), 1e4, np.float32))).pixels).all()


class _Evil:
    def __reduce__(self):
        return (os.system, ("touch /tmp/restore-pwned-5",))


def test_security_checks(tmp_path):
    from restore.models.loader import load_state_dict
    from restore.pipeline.stages import output_path

    # checkpoints: a pickle that would run code is refused, nothing runs
    torch.save({"params": {"w": torch.zeros(1)}, "evil": _Evil()}, tmp_path / "evil.pth")
    with pytest.raises(ModelError):
        load_state_dict(tmp_path / "evil.pth")
    assert not os.path.exists("/tmp/restore-pwned-5")
    # YAML: safe loading, no python tags
    with pytest.raises(PipelineError):
        load_pipeline("version: 1\nsteps: !!python/object/apply:os.system ['touch /tmp/restore-pwned-5']\n")
    assert not os.path.exists("/tmp/restore-pwned-5")
    # output templates cannot leave the output folder, even through a field value
    for template in ("../x.png", "/etc/x.png", "a/../../x.png"):
        with pytest.raises(PipelineError):
            load_pipeline({"version": 1, "steps": [{"write": {"path": template}}]})
    with pytest.raises(InputError, match="leaves the output folder"):
        output_path("{parent}/x.png", tmp_path / "out", {"parent": ".."})
