"""Exposure brackets from a list of files: header probing, exposure-time tables, grouping.

A folder of bracketed shots (``IMG_0001`` .. ``IMG_0009`` = three brackets of
three) becomes a list of groups, each one HDR merge.  :func:`probe` reads the
size and capture metadata from each file's header (no pixel decoding),
:func:`load_exposure_times` reads a table of exposure times for files that
carry none (scans, PNG exports), and :func:`group_brackets` splits the files
in capture order and checks every group can be merged.
"""

from __future__ import annotations

import csv
import io
import math
import re
import struct
from dataclasses import dataclass, replace
from datetime import datetime
from fractions import Fraction
from pathlib import Path
from typing import Callable, Mapping

from ..errors import InputError
from ..io.paths import native_path

__all__ = [
    "FrameInfo",
    "BracketError",
    "probe",
    "load_exposure_times",
    "group_brackets",
    "FrameLook",
    "frame_look",
    "GROUP_MODES",
]

#: Grouping modes of :func:`group_brackets`.
GROUP_MODES = ("exposure-sequence", "size", "time-gap", "ev-bias", "all")

# EXIF tags
_EXIF_IFD = 0x8769
_ORIENTATION = 0x0112
_EXPOSURE_TIME = 0x829A
_F_NUMBER = 0x829D
_ISO = 0x8827
_DATETIME_ORIGINAL = 0x9003
_EXPOSURE_BIAS = 0x9204
_SUBSEC_ORIGINAL = 0x9291

# Two exposure times / EV biases closer than this count as the same
# (EXIF rationals vs decimal tables; bracket steps are >= 1/3 EV = 26 %).
_REL_TOL_TIME = 0.02
_ABS_TOL_EV = 0.01
# Frames without exposure times: a frame whose median-threshold bitmap differs from the previous frame's
# in more than this fraction of pixels shows another scene.  Measured on ../shared/data/brackets
# (taipei_night, memorial_debevec, 64 px thumbnails): consecutive exposures of one scene 0.00-0.17,
# unrelated scenes ~0.5.  Measured brightness is not used to split: it saturates at the extremes
# (memorial's five darkest frames lie within 0.32 EV of each other, film fog).
_SCENE_MISMATCH = 0.3


@dataclass
class FrameInfo:
    """What grouping needs to know about one file, from its header.

    Attributes:
        path: The file.
        width, height: Size in pixels of the image :func:`restore.io.read`
            returns (EXIF orientation / RAW flip applied).
        exposure_time_s: Shutter time in seconds, or None.
        iso: ISO speed, or None.
        ev_bias: EXIF exposure bias (ExposureBiasValue) in EV, or None.
        capture_time: DateTimeOriginal (with sub-seconds when stored; naive,
            camera clock), or None.
        f_number: Aperture f-number, or None.
    """

    path: Path
    width: int
    height: int
    exposure_time_s: float | None
    iso: float | None
    ev_bias: float | None
    capture_time: datetime | None
    f_number: float | None


class BracketError(InputError):
    """A group of files cannot be a bracket; the one-line message names the files and the problem.

    ``path`` is None (the problem belongs to several files); ``files`` lists them.
    """

    def __init__(self, problem: str, files: list[Path] | tuple[Path, ...] = ()):
        self.files = [Path(f) for f in files]
        super().__init__(None, f"bracket {_names(self.files)}: {problem}" if self.files else problem)


# -- small helpers -----------------------------------------------------------------------------------


def _names(paths, limit: int = 12) -> str:
    names = [Path(p).name for p in paths]
    if len(names) > limit:
        return ", ".join(names[: limit - 2]) + f", ... {names[-1]} ({len(names)} files)"
    return ", ".join(names)


def _num(v) -> float | None:
    """A finite float from an EXIF value (rational, int, 1-tuple), else None."""
    if isinstance(v, (tuple, list)):
        v = v[0] if v else None
    if v is None:
        return None
    try:
        f = float(v)
    except (TypeError, ValueError, ZeroDivisionError):
        return None
    return f if math.isfinite(f) else None


def _positive(v) -> float | None:
    f = _num(v)
    return f if f is not None and f > 0 else None


def _parse_exif_time(text, subsec=None) -> datetime | None:
    """``YYYY:MM:DD HH:MM:SS`` (+ SubSecTime digits) -> datetime; None if absent, blank or invalid."""
    if isinstance(text, bytes):
        text = text.decode("ascii", "replace")
    if not isinstance(text, str):
        return None
    text = text.strip("\x00 ")
    m = re.match(r"(\d{4})[:\-](\d{2})[:\-](\d{2})[ T](\d{2}):(\d{2}):(\d{2})", text)
    if not m:
        return None
    try:
        t = datetime(*(int(g) for g in m.groups()))
    except ValueError:  # 0000:00:00 00:00:00 and friends
        return None
    if isinstance(subsec, bytes):
        subsec = subsec.decode("ascii", "replace")
    if isinstance(subsec, (int, float)):
        subsec = str(int(subsec))
    if isinstance(subsec, str):
        digits = re.match(r"\s*(\d+)", subsec)
        if digits:
            t = t.replace(microsecond=int((digits.group(1) + "000000")[:6]))
    return t


# -- probe ---------------------------------------------------------------------------------------------


def _png_exif_after_idat(path: Path) -> bytes | None:
    """The payload of an eXIf chunk placed after the image data (Pillow only sees those after decoding)."""
    try:
        with open(path, "rb") as fh:
            if fh.read(8) != b"\x89PNG\r\n\x1a\n":
                return None
            while True:
                head = fh.read(8)
                if len(head) < 8:
                    return None
                length, ctype = struct.unpack(">I4s", head)
                if ctype == b"eXIf":
                    data = fh.read(length)
                    return data if len(data) == length else None
                if ctype == b"IEND":
                    return None
                fh.seek(length + 4, io.SEEK_CUR)
    except OSError:
        return None


def _probe_pillow(path: Path) -> FrameInfo:
    from PIL import Image as PILImage

    try:
        with PILImage.open(path) as pil:
            width, height = pil.size
            exif = None
            if pil.format == "PNG" and "exif" not in pil.info:
                # Pillow's getexif() would decode the pixels to look for a late eXIf chunk.
                late = _png_exif_after_idat(path)
                if late:
                    exif = PILImage.Exif()
                    exif.load(late if late.startswith(b"Exif\x00\x00") else b"Exif\x00\x00" + late)
            else:
                try:
                    exif = pil.getexif()
                except Exception:  # malformed EXIF: the size is still good
                    exif = None
            info = FrameInfo(path, int(width), int(height), None, None, None, None, None)
            if exif:  # inside the with: TIFF reads the Exif IFD from the open file
                _fill_from_exif(info, exif)
    except Exception as e:  # Pillow cannot parse the header
        raise InputError(path, f"not a readable image ({type(e).__name__}: {e})") from None
    return info


def _fill_from_exif(info: FrameInfo, exif) -> None:
    sub: Mapping = {}
    try:
        sub = exif.get_ifd(_EXIF_IFD)
    except Exception:  # a broken Exif IFD pointer: IFD0 may still help
        pass

    def tag(t):  # Exif IFD first; some writers put capture tags in IFD0
        v = sub.get(t)
        return v if v is not None else exif.get(t)

    info.exposure_time_s = _positive(tag(_EXPOSURE_TIME))
    info.iso = _positive(tag(_ISO))
    info.ev_bias = _num(tag(_EXPOSURE_BIAS))
    info.f_number = _positive(tag(_F_NUMBER))
    info.capture_time = _parse_exif_time(tag(_DATETIME_ORIGINAL), tag(_SUBSEC_ORIGINAL))
    try:
        orientation = int(exif.get(_ORIENTATION, 1) or 1)
    except (TypeError, ValueError):
        orientation = 1
    if orientation in (5, 6, 7, 8):  # restore.io.read rotates these by 90 degrees
        info.width, info.height = info.height, info.width


def _probe_exr(path: Path) -> FrameInfo:
    import OpenEXR

    try:
        with native_path(path) as native:
            head = OpenEXR.File(native, header_only=True).header()
        lo, hi = head["dataWindow"]
        width, height = int(hi[0] - lo[0] + 1), int(hi[1] - lo[1] + 1)
    except Exception as e:
        raise InputError(path, f"not a readable OpenEXR file ({e})") from None
    return FrameInfo(
        path,
        width,
        height,
        exposure_time_s=_positive(head.get("expTime")),
        iso=_positive(head.get("isoSpeed")),
        ev_bias=None,
        capture_time=_parse_exif_time(head.get("capDate")),
        f_number=_positive(head.get("aperture")),
    )


def _probe_raw(path: Path) -> FrameInfo:
    import rawpy

    try:
        with native_path(path) as native:
            raw = rawpy.imread(native)  # opens and parses the header; pixels are unpacked on demand
    except (rawpy.LibRawError, OSError, ValueError) as e:
        raise InputError(path, f"not a RAW file LibRaw can read ({type(e).__name__})") from None
    with raw:
        s = raw.sizes
        width, height = int(s.width), int(s.height)
        if int(s.flip) in (5, 6):  # LibRaw rotates these by 90 degrees when developing
            width, height = height, width
        other = raw.other
        ts = other.timestamp
        capture = ts if isinstance(ts, datetime) and ts.year > 1970 else None
        return FrameInfo(
            path,
            width,
            height,
            exposure_time_s=_positive(other.shutter_speed),
            iso=_positive(other.iso_speed),
            ev_bias=None,  # LibRaw does not expose the EXIF exposure bias
            capture_time=capture,
            f_number=_positive(other.aperture),
        )


def probe(path: str | Path) -> FrameInfo:
    """Size and capture metadata of an image file, from its header (pixels are not decoded).

    PNG / TIFF / JPEG (and the other Pillow formats :func:`restore.io.read`
    takes): size, and from EXIF ExposureTime (0x829A), ISOSpeedRatings
    (0x8827), ExposureBiasValue (0x9204), DateTimeOriginal (0x9003) with
    SubSecTimeOriginal (0x9291), FNumber (0x829D); width and height are
    swapped for EXIF orientations 5-8, as the reader rotates those.  EXR:
    ``dataWindow``, ``expTime``, ``isoSpeed``, ``aperture``, ``capDate``.
    RAW (:data:`restore.io.raw.RAW_SUFFIXES`): LibRaw's sizes (swapped for
    90-degree flips), shutter, ISO, aperture, timestamp; no EV bias.

    Args:
        path: The file.

    Returns:
        :class:`FrameInfo`; fields the file does not store are None.

    Raises:
        InputError: missing file, folder, unsupported suffix, unreadable or
            corrupt header.
    """
    from ..io import READ_SUFFIXES
    from ..io.raw import RAW_SUFFIXES

    from ..io.paths import not_regular

    path = Path(path)
    if not path.exists():
        raise InputError(path, "file not found")
    if path.is_dir():
        raise InputError(path, "is a folder, not an image")
    odd = not_regular(path)
    if odd:  # never open a FIFO or a device
        raise InputError(path, odd)
    suffix = path.suffix.lower()
    if suffix not in READ_SUFFIXES:
        raise InputError(path, f"unsupported file type {suffix or '(no suffix)'}")
    if suffix == ".exr":
        return _probe_exr(path)
    if suffix == ".hdr":
        from ..io.radiance import radiance_size

        w, h, _ = radiance_size(path)
        return FrameInfo(path, w, h, None, None, None, None, None)
    if suffix in RAW_SUFFIXES:
        return _probe_raw(path)
    return _probe_pillow(path)


# -- exposure-time tables -----------------------------------------------------------------------------

_NAME_COLUMNS = {"filename", "file", "name", "image", "path", "file_name", "image_name"}
_TIME_COLUMNS = {"exposure_time_s", "exposure_time", "exposure", "exposure_s", "time", "time_s", "shutter_s", "seconds", "t"}
_INVERSE_COLUMNS = {"1/shutter_speed", "1/exposure_time", "1/exposure", "1/time", "1/t", "inverse_exposure_time"}


def _seconds(text: str) -> float:
    """A positive finite number of seconds: ``0.004``, ``4e-3`` or ``1/250``; ValueError otherwise."""
    t = text.strip()
    v = float(Fraction(t)) if "/" in t else float(t)
    if not math.isfinite(v) or v <= 0:
        raise ValueError(t)
    return v


def _is_number(text: str) -> bool:
    try:
        _seconds(text)
        return True
    except (ValueError, ZeroDivisionError):
        return False


def _column_role(label: str) -> str | None:
    key = label.strip().lower().replace(" ", "_")
    if key in _NAME_COLUMNS:
        return "name"
    if key in _TIME_COLUMNS:
        return "time"
    if key in _INVERSE_COLUMNS:
        return "inverse"
    return None


def _parse_table(path: Path, text: str) -> dict[str, float]:
    """Parse a CSV / whitespace exposure table; see :func:`load_exposure_times`."""

    def fail(lineno: int, problem: str):
        raise InputError(path, f"line {lineno}: {problem}")

    rows: list[tuple[int, list[str]]] = []
    comment_header: list[str] | None = None
    is_csv = False
    for lineno, line in enumerate(text.splitlines(), 1):
        s = line.strip()
        if not s:
            continue
        if s.startswith("#"):
            if not rows and comment_header is None:  # "# Filename exposure 1/shutter_speed ..." labels the columns
                comment_header = s.lstrip("#").split()
            continue
        if "," in s:
            is_csv = True
            fields = [f.strip() for f in next(csv.reader([s]))]
            while fields and fields[-1] == "":
                fields.pop()
        else:
            fields = s.split()
        rows.append((lineno, fields))
    if not rows:
        raise InputError(path, "no exposure times in the file (expected lines 'filename,exposure_time_s')")

    # Which column holds what: from a header row, a '#' header line, or the layout.
    first_line, first = rows[0]
    name_col, time_col, inverse_col = 0, 1, None
    labels = None
    if len(first) < 2:
        fail(first_line, f"expected a file name and an exposure time, got {' '.join(first)!r}")
    if not _is_number(first[1]):
        labels, label_line = first, first_line
        rows = rows[1:]
    elif comment_header and len(comment_header) >= 2 and _column_role(comment_header[0]) == "name":
        labels, label_line = comment_header, None
    if labels is not None:
        roles = [_column_role(lbl) for lbl in labels]
        if "name" not in roles or not ({"time", "inverse"} & set(roles)):
            where = f"line {label_line}: " if label_line else ""
            raise InputError(
                path,
                f"{where}header '{' '.join(labels)}' has no file-name and exposure-time columns "
                "(expected 'filename,exposure_time_s')",
            )
        name_col = roles.index("name")
        inverse_col = roles.index("inverse") if "inverse" in roles else None
        time_col = roles.index("time") if "time" in roles else inverse_col
    elif not is_csv:
        if all(len(f) == 2 for _, f in rows):
            fail(
                first_line,
                "two unlabelled whitespace-separated columns are ambiguous (OpenCV's list.txt holds 1/time, "
                "other tools seconds); add a header line 'filename exposure_time_s' or write 'name,seconds' CSV",
            )
        inverse_col = 2  # image_list.txt: name, time, 1/time, ...

    out: dict[str, float] = {}
    for lineno, fields in rows:
        if len(fields) <= max(name_col, time_col):
            fail(lineno, f"expected a file name and an exposure time, got {' '.join(fields)!r}")
        name = fields[name_col]
        try:
            value = _seconds(fields[time_col])
            if time_col == inverse_col:
                value = 1.0 / value
            elif inverse_col is not None:
                if len(fields) <= inverse_col:
                    fail(lineno, f"{name}: no 1/time column (expected 'name time 1/time' as on the other lines)")
                inv = _seconds(fields[inverse_col])
                if abs(value * inv - 1.0) > 0.01:
                    fail(lineno, f"{name}: exposure time {fields[time_col]} and 1/time {fields[inverse_col]} disagree")
        except (ValueError, ZeroDivisionError):
            bad = fields[time_col] if not _is_number(fields[time_col]) else fields[inverse_col]
            fail(lineno, f"{name}: {bad!r} is not a positive number of seconds")
        key = Path(name).name
        if key in out and not math.isclose(out[key], value, rel_tol=1e-6):
            fail(lineno, f"{key} listed twice with different times ({out[key]:g} s, {value:g} s)")
        out[key] = value
    return out


def load_exposure_times(source: str | Path | Mapping[str, float], base_dir: Path | None = None) -> dict[str, float]:
    """Exposure times by file name, from a mapping or a table file.

    Table formats (``#`` comment lines and blank lines are skipped):

    * CSV with a header: ``filename,exposure_time_s`` (also ``file``/``name``
      and ``exposure_time``/``exposure``/``time``; a ``1/shutter_speed``
      column is inverted);
    * headerless two-column CSV ``name,seconds``;
    * Debevec / OpenCV-tutorial ``image_list.txt``: whitespace-separated
      ``name time 1/time [more columns]`` (the inverse column is checked),
      optionally labelled by a ``# Filename exposure 1/shutter_speed`` line.

    A whitespace file with exactly two unlabelled columns is refused:
    OpenCV's ``list.txt`` stores 1/time there, other tools seconds.  Times may
    be written as fractions (``1/250``).  Keys are base names (``a/b.png``
    -> ``b.png``).

    Args:
        source: ``{file name: seconds}``, or the path of a table file.
        base_dir: Folder a relative ``source`` path is resolved against
            (default: the working directory).

    Returns:
        ``{file name: exposure time in seconds}``, all positive and finite.

    Raises:
        InputError: missing or unreadable file, malformed line (the message
            names the file and the line), non-positive or non-numeric time,
            a name listed twice with different times.
    """
    if isinstance(source, Mapping):
        out: dict[str, float] = {}
        for name, value in source.items():
            try:
                v = _seconds(str(value)) if isinstance(value, str) else float(value)
                if not math.isfinite(v) or v <= 0:
                    raise ValueError(value)
            except (TypeError, ValueError, ZeroDivisionError):
                raise InputError(None, f"exposure_times: {name}: {value!r} is not a positive number of seconds") from None
            key = Path(str(name)).name
            if key in out and not math.isclose(out[key], v, rel_tol=1e-6):
                raise InputError(None, f"exposure_times: {key} given twice with different times")
            out[key] = v
        return out
    path = Path(source)
    if not path.is_absolute() and base_dir is not None:
        path = Path(base_dir) / path
    if not path.is_file():
        raise InputError(path, "exposure-time file not found" if not path.exists() else "exposure-time file is not a file")
    try:
        text = path.read_text(encoding="utf-8-sig")
    except UnicodeDecodeError:
        raise InputError(path, "exposure-time file is not UTF-8 text") from None
    except OSError as e:
        raise InputError(path, f"cannot read exposure-time file ({e.strerror or e})") from None
    return _parse_table(path, text)


# -- what a frame looks like (frames without exposure times) -------------------------------------------


@dataclass
class FrameLook:
    """What a frame shows, measured from its pixels (for files without exposure times).

    Attributes:
        ev: Brightness, log2 of the mean linear Rec.709 luminance (EV); orders
            one scene's frames by exposure, not comparable across scenes.
        bitmap: Median threshold bitmap (Ward, "Fast, robust image registration
            for compositing high dynamic range photographs", JGT 2003) of a
            ~64 px log-luminance thumbnail, bool ``(h, w)``: nearly the same
            for every exposure of one scene.
        valid: Pixels far enough from the median to count, bool ``(h, w)``.
    """

    ev: float
    bitmap: "object"
    valid: "object"

    def scene_mismatch(self, other: "FrameLook") -> float:
        """Fraction of pixels (valid in both) whose median-threshold bit differs: ~0-0.2 for one
        scene at different exposures, ~0.5 for unrelated scenes; 1.0 when sizes differ."""
        import numpy as np

        if self.bitmap.shape != other.bitmap.shape:
            return 1.0
        both = self.valid & other.valid
        n = int(both.sum())
        return float(np.count_nonzero((self.bitmap ^ other.bitmap) & both) / n) if n else 1.0


def frame_look(path: str | Path, raw=None) -> FrameLook:
    """Measure :class:`FrameLook` of an image file (decoded in full, then reduced).

    Args:
        path: The image file.
        raw: :class:`restore.io.RawOptions` for RAW files.

    Raises:
        InputError: the file cannot be read.
    """
    import cv2
    import numpy as np

    from ..color import srgb_to_linear
    from ..io import read

    img = read(path, raw)
    px = img.color
    px = px[..., :3] if px.shape[2] >= 3 else np.repeat(px[..., :1], 3, axis=2)
    h, w = px.shape[:2]
    k = 64 / max(h, w)
    small = cv2.resize(px, (max(1, round(w * k)), max(1, round(h * k))), interpolation=cv2.INTER_AREA) if k < 1 else px
    lin = srgb_to_linear(np.clip(small, 0, 1)) if img.encoding.transfer == "srgb" else np.maximum(small, 0)
    y = lin[..., 0] * 0.2126 + lin[..., 1] * 0.7152 + lin[..., 2] * 0.0722
    ev = float(np.log2(float(np.mean(y)) + 1e-6))
    g = np.log2(y + 1e-4)  # monotonic in exposure, like the 8-bit grey MTB uses
    med = float(np.median(g))
    return FrameLook(ev, g > med, np.abs(g - med) > 0.1)


# -- grouping ------------------------------------------------------------------------------------------


def _natural_key(name: str):
    return [int(t) if t.isdigit() else t.lower() for t in re.split(r"(\d+)", name)]


def _same_time(a: float, b: float) -> bool:
    return abs(a - b) <= _REL_TOL_TIME * max(a, b)


def _fmt_time(t: float) -> str:
    if t >= 1:
        return f"{t:g} s"
    inv = 1 / t
    return f"1/{round(inv)} s" if abs(inv - round(inv)) < 0.01 * inv else f"{t:.3g} s"


def _split_on_repeat(infos: list[FrameInfo], value: Callable[[FrameInfo], float | None], same) -> list[list[FrameInfo]]:
    """Start a new group whenever a frame's value repeats one already in the current group."""
    groups: list[list[FrameInfo]] = []
    for info in infos:
        v = value(info)
        cur = groups[-1] if groups else None
        if cur is not None and not (v is not None and any((w := value(o)) is not None and same(v, w) for o in cur)):
            cur.append(info)
        else:
            groups.append([info])
    return groups


def _split_by_look(infos: list[FrameInfo], looks: Mapping[Path, FrameLook | None]) -> list[list[FrameInfo]]:
    """Brackets from measured looks, in file order: a new group where the scene (or the size) changes."""
    groups: list[list[FrameInfo]] = []
    prev: FrameLook | None = None
    for info in infos:
        lk = looks.get(info.path)
        cur = groups[-1] if groups else None
        if cur is None or (info.width, info.height) != (cur[-1].width, cur[-1].height) or (
                lk is not None and prev is not None and lk.scene_mismatch(prev) > _SCENE_MISMATCH):
            groups.append([info])
        else:
            cur.append(info)
        prev = lk if lk is not None else prev
    return groups


def _validate(group: list[FrameInfo], need_times: bool = True) -> None:
    paths = [i.path for i in group]
    if len(group) < 2:
        raise BracketError("only 1 frame (a bracket needs at least 2 exposures)", paths)
    w0, h0 = group[0].width, group[0].height
    for i in group[1:]:
        if (i.width, i.height) != (w0, h0):
            raise BracketError(f"sizes differ ({w0}x{h0} vs {i.width}x{i.height})", paths)
    if not need_times:  # exposure fusion weighs pixels by how well exposed they are: no times needed
        return
    missing = [i.path for i in group if i.exposure_time_s is None]
    if len(missing) == len(group):
        raise BracketError("no exposure times in the files' metadata (give exposure_times)", paths)
    if missing:
        raise BracketError(f"no exposure time for {_names(missing)} (give exposure_times)", paths)
    t0 = group[0].exposure_time_s
    if all(_same_time(i.exposure_time_s, t0) for i in group[1:]):
        raise BracketError(f"all frames have the same exposure time ({_fmt_time(t0)})", paths)


def group_brackets(
    infos: list[FrameInfo],
    *,
    by: str = "exposure-sequence",
    size: int | None = None,
    time_gap_s: float = 2.0,
    exposure_times: Mapping[str, float] | None = None,
    errors: list | None = None,
    need_times: bool = True,
    look: Callable[[Path], FrameLook | None] | None = None,
) -> list[list[FrameInfo]]:
    """Split probed files into exposure brackets and check each one can be merged.

    Files are first put in capture order: by capture time when every file has
    one (ties by name), else by file name (natural order: ``IMG_9`` before
    ``IMG_10``).  ``exposure_times`` (by file name) override or fill in the
    files' own exposure times.

    Modes (``by``):

    * ``"size"``: consecutive groups of ``size`` frames; a remainder is an error.
    * ``"exposure-sequence"``: a new group starts when a frame's exposure time
      repeats one already in the current group (the camera's auto-bracketing
      started over).  Times within 2 % count as the same.
    * ``"ev-bias"``: the same with the EXIF exposure bias (every file needs one).
    * ``"time-gap"``: a new group starts when the capture time jumps by more
      than ``time_gap_s`` seconds (every file needs a capture time).
    * ``"all"``: one group.

    Every group must have at least 2 frames, all of one size, and (with
    ``need_times``, as radiance merges need) all with an exposure time, not all
    the same exposure time.

    Without exposure times (PNG exports, scans: no EXIF, no table) and with
    ``need_times=False`` (exposure fusion), ``"exposure-sequence"`` splits by
    what is known: the folder (callers group each folder on its own), the
    file order and what each frame shows (``look(path)``, e.g.
    :func:`frame_look`): a new group starts where the scene changes (more
    than 30 % of the median-threshold bits differ from the previous frame's)
    or the size changes.  Several brackets of one unchanged scene cannot be
    told apart this way: give ``group: {by: size, size: N}`` or exposure
    times.  Without ``look`` all such frames are one group.

    Args:
        infos: From :func:`probe`, in any order.
        by: One of :data:`GROUP_MODES`.
        size: Frames per bracket for ``by="size"``.
        time_gap_s: Largest gap in seconds within a bracket for ``by="time-gap"``.
        exposure_times: ``{file name: seconds}`` (see :func:`load_exposure_times`);
            a full path as key works too.
        errors: When a list is given, a group that fails the checks is
            appended to it as a :class:`BracketError` and left out of the
            result instead of raising, so the other brackets can go on.
        need_times: Every frame needs an exposure time (radiance merges);
            False for exposure fusion.
        look: Measures a frame's :class:`FrameLook` (only called for
            ``"exposure-sequence"`` when frames lack exposure times and
            ``need_times`` is False); None for a frame that cannot be read.

    Returns:
        The brackets, each a list of :class:`FrameInfo` (copies carrying the
        overridden exposure times) in capture order.

    Raises:
        BracketError: a group fails the checks, a remainder in ``"size"``
            mode, missing capture times / EV biases for the modes that need
            them; the one-line message names the files and the problem, e.g.
            ``bracket a.png, b.png: sizes differ (768x512 vs 512x768)``.
        ValueError: unknown mode, ``size`` missing or < 1, ``time_gap_s`` <= 0.
    """
    if by not in GROUP_MODES:
        raise ValueError(f"unknown grouping {by!r}; use one of {', '.join(GROUP_MODES)}")
    if by == "size" and (size is None or int(size) < 1):
        raise ValueError(f"grouping by size needs size >= 1, got {size!r}")
    if by == "time-gap" and not time_gap_s > 0:
        raise ValueError(f"time_gap_s must be > 0, got {time_gap_s!r}")
    if not infos:
        return []

    items = list(infos)
    if exposure_times:
        items = [
            replace(i, exposure_time_s=float(t))
            if (t := exposure_times.get(i.path.name, exposure_times.get(str(i.path)))) is not None
            else i
            for i in items
        ]
    if all(i.capture_time is not None for i in items):
        items.sort(key=lambda i: (i.capture_time, _natural_key(i.path.name), str(i.path)))
    else:
        items.sort(key=lambda i: (_natural_key(i.path.name), str(i.path)))

    if by == "all":
        groups = [items]
    elif by == "size":
        n = int(size)
        full = len(items) - len(items) % n
        if full != len(items):
            rest = items[full:]
            raise BracketError(
                f"{len(rest)} file{'s' if len(rest) > 1 else ''} left over after brackets of {n}"
                f" ({len(items)} files are not a multiple of {n})",
                [i.path for i in rest],
            )
        groups = [items[k : k + n] for k in range(0, len(items), n)]
    elif by == "exposure-sequence":
        if not need_times and look is not None and any(i.exposure_time_s is None for i in items):
            groups = _split_by_look(items, {i.path: look(i.path) for i in items})
        else:
            groups = _split_on_repeat(items, lambda i: i.exposure_time_s, _same_time)
    elif by == "ev-bias":
        missing = [i.path for i in items if i.ev_bias is None]
        if missing:
            raise BracketError(
                "no EXIF exposure bias (ExposureBiasValue); group by exposure-sequence, size or time-gap instead",
                missing,
            )
        groups = _split_on_repeat(items, lambda i: i.ev_bias, lambda a, b: abs(a - b) <= _ABS_TOL_EV)
    else:  # time-gap
        missing = [i.path for i in items if i.capture_time is None]
        if missing:
            raise BracketError(
                "no capture time (EXIF DateTimeOriginal); group by exposure-sequence or size instead",
                missing,
            )
        groups = [[items[0]]]
        for prev, cur in zip(items, items[1:]):
            if (cur.capture_time - prev.capture_time).total_seconds() > time_gap_s:
                groups.append([cur])
            else:
                groups[-1].append(cur)

    if errors is None:
        for g in groups:
            _validate(g, need_times)
        return groups
    valid = []
    for g in groups:
        try:
            _validate(g, need_times)
            valid.append(g)
        except BracketError as e:
            errors.append(e)
    return valid
