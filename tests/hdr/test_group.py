"""Bracket grouping: header probing, exposure-time tables, grouping modes and their errors."""

from datetime import datetime, timedelta
from fractions import Fraction
from pathlib import Path

import numpy as np
import pytest
from PIL import Image as PILImage
from PIL import TiffImagePlugin

from restore.errors import InputError
from restore.hdr.group import BracketError, FrameInfo, group_brackets, load_exposure_times, probe
from restore.image import LINEAR_REC709, Image, Metadata
from restore.io import read, write
from tests.golden import shared_path

T0 = datetime(2024, 5, 1, 12, 0, 0)
ROOT = Path(__file__).resolve().parents[2]


def _exif(t=None, iso=None, ev=None, when=None, subsec=None, f=None, orientation=None) -> PILImage.Exif:
    ex = PILImage.Exif()
    sub = {}
    if t is not None:
        fr = Fraction(t).limit_denominator(100000)
        sub[0x829A] = TiffImagePlugin.IFDRational(fr.numerator, fr.denominator)
    if iso is not None:
        sub[0x8827] = int(iso)
    if ev is not None:
        fr = Fraction(ev).limit_denominator(100)
        sub[0x9204] = TiffImagePlugin.IFDRational(fr.numerator, fr.denominator)
    if when is not None:
        sub[0x9003] = when.strftime("%Y:%m:%d %H:%M:%S")
    if subsec is not None:
        sub[0x9291] = subsec
    if f is not None:
        sub[0x829D] = TiffImagePlugin.IFDRational(int(f * 10), 10)
    if orientation is not None:
        ex[0x0112] = orientation
    if sub:
        ex[0x8769] = sub
    return ex


def _frame(folder: Path, name: str, size=(8, 6), **exif) -> Path:
    """A tiny image file (width, height = size) with the given EXIF; format from the suffix."""
    w, h = size
    px = (np.arange(w * h * 3, dtype=np.uint8).reshape(h, w, 3) * 7) % 251
    p = folder / name
    ex = _exif(**exif)
    kw = {}
    if len(ex):
        kw["exif"] = ex.tobytes() if p.suffix in (".tif", ".tiff") else ex
    PILImage.fromarray(px).save(p, **kw)
    return p


def _names(groups):
    return [[i.path.name for i in g] for g in groups]


def _info(name, t=None, size=(8, 6), when=None, ev=None):
    return FrameInfo(Path(name), size[0], size[1], t, None, ev, when, None)


# -- probe ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize("suffix", [".jpg", ".png", ".tif"])
def test_probe_reads_exif_from_pillow_formats(tmp_path, suffix):
    p = _frame(tmp_path, "a" + suffix, size=(10, 7), t=1 / 250, iso=200, ev=-2 / 3, when=T0, subsec="25", f=2.8)
    info = probe(p)
    assert (info.path, info.width, info.height) == (p, 10, 7)
    assert info.exposure_time_s == pytest.approx(1 / 250)
    assert info.iso == 200 and info.f_number == pytest.approx(2.8)
    assert info.ev_bias == pytest.approx(-2 / 3, abs=0.01)
    assert info.capture_time == T0.replace(microsecond=250000)
    # the same values the full reader finds
    meta = read(p).meta
    assert meta.exposure_time_s == pytest.approx(info.exposure_time_s)
    assert meta.capture_time == "2024:05:01 12:00:00"


def test_probe_without_exif_and_with_rotation(tmp_path):
    info = probe(_frame(tmp_path, "plain.png", size=(9, 4)))
    assert (info.width, info.height, info.exposure_time_s, info.capture_time, info.ev_bias) == (9, 4, None, None, None)
    rot = probe(_frame(tmp_path, "rot.jpg", size=(9, 4), t=0.5, orientation=6))
    assert (rot.width, rot.height) == (4, 9)  # as restore.io.read returns it
    assert read(rot.path).pixels.shape[:2] == (9, 4)


def test_probe_png_exif_after_image_data(tmp_path):
    p = _frame(tmp_path, "late.png", size=(5, 3))
    data = p.read_bytes()
    payload = _exif(t=0.125, when=T0).tobytes()[6:]  # without "Exif\0\0"
    import struct
    import zlib

    chunk = struct.pack(">I", len(payload)) + b"eXIf" + payload + struct.pack(">I", zlib.crc32(b"eXIf" + payload))
    end = data.rindex(b"IEND") - 4
    p.write_bytes(data[:end] + chunk + data[end:])
    info = probe(p)
    assert info.exposure_time_s == pytest.approx(0.125) and info.capture_time == T0


def test_probe_exr_header(tmp_path):
    px = np.full((5, 7, 3), 0.25, np.float32)
    p = write(Image(px, LINEAR_REC709, Metadata(exposure_time_s=0.01, iso=400, f_number=4.0)), tmp_path / "a.exr")
    info = probe(p)
    assert (info.width, info.height) == (7, 5)
    assert info.exposure_time_s == pytest.approx(0.01) and info.iso == 400 and info.f_number == pytest.approx(4.0)
    assert info.ev_bias is None and info.capture_time is None


def test_probe_raw_header():
    dng = ROOT / "examples" / "coffee_raw.dng"
    if not dng.exists():
        pytest.skip(f"{dng} not in this checkout")
    info = probe(dng)
    img = read(dng)
    assert (info.width, info.height) == (img.width, img.height)
    assert info.exposure_time_s == pytest.approx(img.meta.exposure_time_s)
    assert info.ev_bias is None


def test_probe_errors_name_the_file(tmp_path):
    with pytest.raises(InputError, match="missing.png: file not found"):
        probe(tmp_path / "missing.png")
    bad = tmp_path / "bad.jpg"
    bad.write_bytes(b"not an image at all")
    with pytest.raises(InputError, match="bad.jpg: not a readable image"):
        probe(bad)
    bad_exr = tmp_path / "bad.exr"
    bad_exr.write_bytes(b"\x76\x2f\x31\x01garbage")
    with pytest.raises(InputError, match="bad.exr: not a readable OpenEXR"):
        probe(bad_exr)
    (tmp_path / "notes.txt").write_text("x")
    with pytest.raises(InputError, match="unsupported file type .txt"):
        probe(tmp_path / "notes.txt")


# -- grouping modes ------------------------------------------------------------------------------------


def test_exposure_sequence_restarts_on_repeated_time_in_name_order(tmp_path):
    times = [1 / 60, 1 / 250, 1 / 15] * 2 + [1 / 60, 1 / 250]
    paths = [_frame(tmp_path, f"IMG_{k}.jpg", t=t) for k, t in enumerate(times, start=5)]  # IMG_5 .. IMG_12
    groups = group_brackets([probe(p) for p in reversed(paths)])
    assert _names(groups) == [["IMG_5.jpg", "IMG_6.jpg", "IMG_7.jpg"], ["IMG_8.jpg", "IMG_9.jpg", "IMG_10.jpg"], ["IMG_11.jpg", "IMG_12.jpg"]]


def test_capture_time_order_wins_over_names(tmp_path):
    # names run backwards; capture times (with sub-seconds in one second) give the order
    paths = [
        _frame(tmp_path, "c.jpg", t=0.01, when=T0, subsec="10"),
        _frame(tmp_path, "b.jpg", t=0.04, when=T0, subsec="50"),
        _frame(tmp_path, "a.jpg", t=0.16, when=T0 + timedelta(seconds=1)),
    ]
    groups = group_brackets([probe(p) for p in paths], by="all")
    assert _names(groups) == [["c.jpg", "b.jpg", "a.jpg"]]


def test_ev_bias_groups(tmp_path):
    evs = [0, -2, 2, 0, -2, 2]
    paths = [_frame(tmp_path, f"f{k}.jpg", t=0.01 * 2.0**ev, ev=ev) for k, ev in enumerate(evs)]
    groups = group_brackets([probe(p) for p in paths], by="ev-bias")
    assert _names(groups) == [["f0.jpg", "f1.jpg", "f2.jpg"], ["f3.jpg", "f4.jpg", "f5.jpg"]]


def test_time_gap_groups(tmp_path):
    offsets = [0, 1, 2, 10, 11, 12]
    paths = [_frame(tmp_path, f"g{k}.jpg", t=[0.1, 0.4, 0.025][k % 3], when=T0 + timedelta(seconds=s)) for k, s in enumerate(offsets)]
    infos = [probe(p) for p in paths]
    assert _names(group_brackets(infos, by="time-gap")) == [["g0.jpg", "g1.jpg", "g2.jpg"], ["g3.jpg", "g4.jpg", "g5.jpg"]]
    assert [len(g) for g in group_brackets(infos, by="time-gap", time_gap_s=20)] == [6]
    with pytest.raises(BracketError, match=r"^bracket g0.jpg: only 1 frame"):
        group_brackets(infos, by="time-gap", time_gap_s=0.5)


def test_size_and_all_modes():
    infos = [_info(f"s{k}.png", t=[1.0, 0.25, 4.0][k % 3]) for k in range(6)]
    assert _names(group_brackets(infos, by="size", size=3)) == [["s0.png", "s1.png", "s2.png"], ["s3.png", "s4.png", "s5.png"]]
    assert [len(g) for g in group_brackets(infos, by="size", size=2)] == [2, 2, 2]
    assert _names(group_brackets(infos, by="all")) == [[f"s{k}.png" for k in range(6)]]


def test_exposure_times_fill_in_metadata(tmp_path):
    paths = [_frame(tmp_path, f"m{k}.png") for k in range(4)]  # no EXIF at all
    infos = [probe(p) for p in paths]
    times = {"m0.png": 1.0, "m1.png": 0.25, "m2.png": 1.0, "m3.png": 0.25}
    groups = group_brackets(infos, exposure_times=times)
    assert _names(groups) == [["m0.png", "m1.png"], ["m2.png", "m3.png"]]
    assert [i.exposure_time_s for i in groups[0]] == [1.0, 0.25]
    assert infos[0].exposure_time_s is None  # the caller's infos are not modified
    # a table overrides what the files say
    p = _frame(tmp_path, "x0.jpg", t=0.5)
    q = _frame(tmp_path, "x1.jpg", t=0.5)
    (g,) = group_brackets([probe(p), probe(q)], by="all", exposure_times={"x1.jpg": 2.0})
    assert [i.exposure_time_s for i in g] == [0.5, 2.0]


# -- validation errors ---------------------------------------------------------------------------------


def test_sizes_differ_names_files():
    infos = [_info("memorial0061.png", 32, size=(768, 512)), _info("memorial0062.png", 16, size=(512, 768))]
    with pytest.raises(BracketError) as e:
        group_brackets(infos, by="all")
    assert str(e.value) == "bracket memorial0061.png, memorial0062.png: sizes differ (768x512 vs 512x768)"
    assert e.value.path is None and isinstance(e.value, InputError)
    assert [p.name for p in e.value.files] == ["memorial0061.png", "memorial0062.png"]


def test_single_exposure_and_missing_times_and_single_frame():
    with pytest.raises(BracketError, match=r"^bracket a.png, b.png, c.png: all frames have the same exposure time \(1/250 s\)$"):
        group_brackets([_info(n, 0.004) for n in ("a.png", "b.png", "c.png")], by="all")
    with pytest.raises(BracketError, match=r"^bracket a.png, b.png, c.png: no exposure time for b.png, c.png"):
        group_brackets([_info("a.png", 1.0), _info("b.png"), _info("c.png")], by="all")
    with pytest.raises(BracketError, match=r"^bracket c.png: only 1 frame"):
        group_brackets([_info("a.png", 1.0), _info("b.png", 0.5), _info("c.png", 1.0)])  # sequence: [a, b], [c]


def test_size_remainder_names_leftover_files():
    infos = [_info(f"r{k}.png", t=2.0**-k) for k in range(7)]
    with pytest.raises(BracketError, match=r"^bracket r6.png: 1 file left over after brackets of 3"):
        group_brackets(infos, by="size", size=3)


def test_modes_needing_metadata_say_which_files_lack_it():
    infos = [_info("a.png", 1.0, when=T0, ev=0), _info("b.png", 0.5, ev=-1), _info("c.png", 2.0, when=T0)]
    with pytest.raises(BracketError, match=r"^bracket b.png: no capture time"):
        group_brackets(infos, by="time-gap")
    with pytest.raises(BracketError, match=r"^bracket c.png: no EXIF exposure bias"):
        group_brackets(infos, by="ev-bias")
    with pytest.raises(ValueError, match="unknown grouping"):
        group_brackets(infos, by="colour")
    with pytest.raises(ValueError, match="size"):
        group_brackets(infos, by="size")


# -- exposure-time tables ------------------------------------------------------------------------------


def test_exposure_tables_csv_headerless_and_image_list(tmp_path):
    (tmp_path / "t.csv").write_text("filename,exposure_time_s\na.png,0.5\nsub/b.png,1/250\n\n")
    assert load_exposure_times("t.csv", base_dir=tmp_path) == {"a.png": 0.5, "b.png": pytest.approx(0.004)}
    (tmp_path / "h.csv").write_text("# made by hand\na.png, 2\nb.png, 0.125\n")
    assert load_exposure_times(tmp_path / "h.csv") == {"a.png": 2.0, "b.png": 0.125}
    (tmp_path / "image_list.txt").write_text("# Filename exposure 1/shutter_speed f/stop\nx.png  4  0.25  8\ny.png  0.5  2  8\n")
    assert load_exposure_times(tmp_path / "image_list.txt") == {"x.png": 4.0, "y.png": 0.5}
    (tmp_path / "nolabel.txt").write_text("x.png 4 0.25\ny.png 0.5 2\n")
    assert load_exposure_times(tmp_path / "nolabel.txt") == {"x.png": 4.0, "y.png": 0.5}
    (tmp_path / "inv.csv").write_text("file,1/shutter_speed\nx.png,250\n")
    assert load_exposure_times(tmp_path / "inv.csv") == {"x.png": pytest.approx(0.004)}
    assert load_exposure_times({"dir/a.png": 0.5, "b.png": "1/4"}) == {"a.png": 0.5, "b.png": 0.25}


@pytest.mark.parametrize(
    "text, line, problem",
    [
        ("filename,exposure_time_s\na.png,0.5\nb.png,fast\n", 3, r"b.png: 'fast' is not a positive number"),
        ("filename,exposure_time_s\na.png,-1\n", 2, r"a.png: '-1' is not a positive number"),
        ("filename,exposure_time_s\na.png\n", 2, r"expected a file name and an exposure time"),
        ("name,iso\na.png,100\n", 1, r"header 'name iso' has no file-name and exposure-time columns"),
        ("a.png 4 0.25\nb.png 2 0.25\n", 2, r"b.png: exposure time 2 and 1/time 0.25 disagree"),
        ("a.png 4 0.25\nb.png 2\n", 2, r"b.png: no 1/time column"),
        ("a.png 0.03125\nb.png 0.0625\n", 1, r"ambiguous"),
        ("a.png,1\na.png,2\n", 2, r"a.png listed twice"),
    ],
)
def test_malformed_tables_name_file_and_line(tmp_path, text, line, problem):
    p = tmp_path / "times.csv"
    p.write_text(text)
    with pytest.raises(InputError, match=rf"times.csv: line {line}: .*{problem}"):
        load_exposure_times(p)


def test_table_file_and_mapping_errors(tmp_path):
    with pytest.raises(InputError, match=r"nope.csv: exposure-time file not found"):
        load_exposure_times("nope.csv", base_dir=tmp_path)
    (tmp_path / "empty.csv").write_text("# nothing\n")
    with pytest.raises(InputError, match="empty.csv: no exposure times"):
        load_exposure_times(tmp_path / "empty.csv")
    with pytest.raises(InputError, match=r"exposure_times: a.png: 0 is not a positive number"):
        load_exposure_times({"a.png": 0})


@pytest.mark.parametrize("name", ["exposures.csv", "image_list.txt"])
def test_real_memorial_tables(name):
    p = shared_path("data", "brackets", "memorial_debevec", name)
    times = load_exposure_times(p)
    assert len(times) == 16
    names = sorted(times)
    assert names[0] == "memorial0061.png" and names[-1] == "memorial0076.png"
    assert times["memorial0061.png"] == 32.0
    assert times["memorial0076.png"] == pytest.approx(1 / 1024, rel=1e-5)
    vals = [times[n] for n in names]
    assert all(a / b == pytest.approx(2.0, rel=1e-5) for a, b in zip(vals, vals[1:]))


def test_real_memorial_folder_groups_into_one_bracket():
    folder = shared_path("data", "brackets", "memorial_debevec")
    times = load_exposure_times("exposures.csv", base_dir=folder)
    infos = [probe(p) for p in sorted(folder.glob("*.png"))]
    assert all((i.width, i.height, i.exposure_time_s) == (512, 768, None) for i in infos)  # no EXIF in the scans
    (group,) = group_brackets(infos, exposure_times=times)
    assert [i.path.name for i in group] == sorted(times)
    with pytest.raises(BracketError, match=r"memorial0076.png \(16 files\): no exposure times in the files' metadata"):
        group_brackets(infos, by="all")
