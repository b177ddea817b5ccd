"""Hostile and broken inputs: a seeded corpus of >= 1000 files, decompression bombs, NaN/Inf EXR, security checks.

The corpus (:func:`make_corpus`, seeded: the same bytes every run) is generated in ``tmp_path`` from a few
good files: truncations at many points (PNG, JPEG, TIFF chunky and planar 16-bit and float, EXR, Radiance
HDR, and RAW under .dng/.nef/.cr2 names), garbage with and without a valid signature, zero-byte files for
every suffix the reader takes, wrong extensions (a JPEG named .png, a PNG named .exr ...), NaN/Inf EXR, PNG
CRC corruption, huge-dimension headers, byte flips at seeded random places (which may or may not still
decode: *maybe* files), TIFF variants (palette, CMYK, 16-bit with alpha, planar, float, signed) and good
files under odd names (not UTF-8, an ANSI escape, 250 characters, spaces and non-Latin letters).  Mixed with
good files and run through ``restore run`` (worker process, stall limit) in a process limited to 4 GiB of
address space: zero uncaught exceptions, zero hangs, each bad file reported by name with one line, every
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


def make_corpus(root: Path) -> tuple[list[Path], list[Path], list[Path]]:
    """Write good and malformed files into ``root`` (seeded); return ``(good, bad, maybe)``: files that must
    be processed, files that must fail with a reason, and byte-flipped files that may do either."""
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
    # TIFF variants (tifffile reads every sample format and layout) and a Radiance HDR
    variants = {
        "palette.tif": dict(data=(img[:, :, 0] // 32).astype(np.uint8), photometric="palette",
                            colormap=np.tile(np.linspace(0, 65535, 256, dtype=np.uint16), (3, 1))),
        "cmyk.tif": dict(data=np.concatenate([img, img[:, :, :1]], axis=2), photometric="separated"),
        "rgba16.tif": dict(data=np.concatenate([img, img[:, :, :1]], axis=2).astype(np.uint16) * 257, photometric="rgb",
                           extrasamples=["unassalpha"]),
        "planar16.tif": dict(data=np.moveaxis(img.astype(np.uint16) * 257, -1, 0), photometric="rgb", planarconfig="separate",
                             rowsperstrip=2),
        "float.tif": dict(data=(img / 255.0).astype(np.float32), photometric="rgb"),
        "signed.tif": dict(data=(img // 2).astype(np.int16), photometric="rgb"),
    }
    for name, kw in variants.items():
        tifffile.imwrite(root / name, **kw)
        good.append(root / name)
    src["planar16"] = (root / "planar16.tif").read_bytes()
    src["float"] = (root / "float.tif").read_bytes()
    ok, hdr = cv2.imencode(".hdr", (img / 255.0).astype(np.float32))
    src["hdr"] = hdr.tobytes()
    put("good.hdr", src["hdr"], good)
    # good files under odd names: not UTF-8, an ANSI escape, 250 characters, spaces and other scripts
    for name in (os.fsdecode(b"latin1_caf\xe9.png"), "esc_\x1b[31mred.png", "x" * 246 + ".png", "with spaces and ümlauts.png",
                 "фото_写真.png"):
        put(name, src["png"], good)

    bad = []
    # truncations at many points, RAW under three camera names
    for kind, data in src.items():
        n = len(data)
        cuts = sorted({1, 4, 8, 12, 16, 24, 33, 48, 64, 100, 200, n // 100, n // 50, n // 20, n // 10, n // 5, n // 4, n // 3, n // 2, 2 * n // 3, 3 * n // 4, 4 * n // 5, 9 * n // 10, n - 64, n - 16, n - 2, n - 1}
                      | {int(n * f) for f in np.linspace(0.03, 0.97, 24)})
        names = {"dng": ["dng", "nef", "cr2"], "planar16": ["tif"], "float": ["tiff"]}.get(kind, [kind])
        for c in (c for c in cuts if 0 < c < n):
            for ext in names:
                put(f"cut{c}_{kind}.{ext}", data[:c], bad)
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
    # under the pixel limit, over the memory of a 4 GiB process: refused by the decode budget
    put("bomb324mp.jpg", _patch_jpeg_size(src["jpg"], 18_000, 18_000), bad)
    put("bomb225mp.png", _png_header(15_000, 15_000), bad)
    # byte flips at seeded places: a flipped pixel byte may still decode, a flipped header byte not
    maybe = []
    flip_rng = np.random.default_rng(17)
    for kind, data in src.items():
        ext = {"planar16": "tif", "float": "tiff"}.get(kind, kind)
        for k in range(48):
            b = bytearray(data)
            for pos in flip_rng.integers(0, len(b), size=int(flip_rng.integers(1, 9))):
                b[pos] ^= int(flip_rng.integers(1, 256))
            put(f"flip{k}_{kind}.{ext}", bytes(b), maybe)
    return good, bad, maybe


#: The memory the in-process tests of this module may use, as :func:`restore.io.limits.available_memory` sees it.
#: The corpus holds headers of 225 and 324 MP (under the pixel limit): whether the memory check refuses them must
#: not depend on how much memory the machine running the tests has free (on a 24 GiB machine 324 MP needs 21.7 GiB,
#: about what is free, and a fresh CI run once decoded it in-process and was killed for memory).  The subprocess
#: tests get the same budget from RLIMIT_AS.
TEST_MEMORY = 4 << 30


@pytest.fixture(scope="module", autouse=True)
def _memory_budget():
    import restore.io.limits as limits

    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(limits, "available_memory", lambda: TEST_MEMORY)
        yield


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    root = tmp_path_factory.mktemp("corpus")
    good, bad, maybe = make_corpus(root / "in")
    return root, good, bad, maybe


def test_corpus_is_big_and_every_bad_file_is_refused_by_the_reader(corpus):
    root, good, bad, maybe = corpus
    assert len(good) + len(bad) + len(maybe) >= 1000 and len(bad) >= 500 and len(good) >= 20
    for p in good:
        assert read(p).pixels.size > 0, p
    for p in bad + maybe:
        t0 = time.monotonic()
        try:
            read(p)
            assert p in maybe, f"{p.name} was read"
        except InputError as e:  # the one kind of error a bad file may give: it names the file and the problem
            assert str(p) in str(e) and len(e.problem) > 5
        assert time.monotonic() - t0 < 5, p


def _limit_4gib():
    import resource

    resource.setrlimit(resource.RLIMIT_AS, (TEST_MEMORY, TEST_MEMORY))


def test_corpus_through_restore_run(corpus):
    """The whole corpus through `restore run` in a process (and worker) limited to 4 GiB of address space."""
    root, good, bad, maybe = corpus
    out = root / "out"
    (root / "p.yaml").write_text("version: 1\nname: fast\nsteps:\n  - resize: {scale: 0.5, filter: area}\n  - write: {path: '{name}.png'}\n")
    t0 = time.monotonic()
    r = subprocess.run([sys.executable, "-m", "restore.cli", "run", root / "p.yaml", root / "in", "-o", out, "--timeout", "30"],
                       capture_output=True, timeout=900, preexec_fn=_limit_4gib)
    took = time.monotonic() - t0
    stdout, text = r.stdout.decode("utf-8"), (r.stdout + r.stderr).decode("utf-8")
    assert took < 600
    assert r.returncode == 1 and "Traceback" not in text and "timed out" not in text and "out of memory" not in text, text[-3000:]
    summary = next(x for x in stdout.splitlines() if x.startswith("fast: "))
    done, failed = int(summary.split(" done")[0].split()[-1]), int(summary.split(" failed")[0].split()[-1])
    assert done + failed == len(good) + len(bad) + len(maybe) and ", 0 skipped, " in summary, summary
    failed_lines = [line for line in stdout.splitlines() if line.startswith("  failed: ")]
    assert len(failed_lines) == failed
    from restore.text import printable

    for p in bad:
        shown = printable(p)
        line = next((x for x in failed_lines if f"{shown}: " in x), None)
        assert line is not None, f"{p.name} not reported"
        assert len(line.split(f"{shown}: ", 1)[1]) > 5  # a reason
    written = {os.fsencode(x.name) for x in out.iterdir() if not x.name.startswith(".")}
    for p in good:
        name = os.fsencode(p.name + ".png")
        assert name in written or any(w.endswith(b".png") and b"~" in w for w in written if len(name) > 230), p.name
    for p in good[:12]:
        assert cv2.imread(str(out / f"{p.name}.png")) is not None
    print(f"corpus: {len(good)} good, {len(bad)} bad, {len(maybe)} byte-flipped; {done} done, {failed} failed in {took:.1f} s")


def test_corpus_through_the_api_and_watch_once(corpus, tmp_path):
    from restore.watch import Watcher, WatchOptions

    root, good, bad, maybe = corpus
    pipe = load_pipeline(FAST)
    files = [p for p in collect_inputs([root / "in"]) if p not in set(maybe)]
    report = pipe.run(files, tmp_path / "api")
    assert report.count("done") == len(good) and report.count("failed") == len(bad)
    # the watch daemon on a sample: every bad file fails for good with its reason, no retries of decode errors
    sample = tmp_path / "watch"
    sample.mkdir()
    picked = good[:4] + bad[::25]
    for p in picked:
        (sample / p.name).write_bytes(p.read_bytes())
    w = Watcher(pipe, sample, tmp_path / "wout", WatchOptions(once=True, settle_s=0.1, timeout_s=None, poll_s=0.02))
    rep = w.run()
    assert sorted(r.input.name for r in rep.done) == sorted(p.name for p in good[:4])
    assert sorted(r.input.name for r in rep.failed) == sorted(p.name for p in bad[::25])
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
