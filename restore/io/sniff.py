"""What a file really holds, from its first bytes (magic numbers), whatever its name says.

A PNG saved as ``.jpg``, a DNG renamed ``.tif`` or a text file named ``.png`` then gets a reason a
user can act on ("PNG data in a .jpg file", "not an image (text)") instead of a decoder's complaint
about the format it expected.

Signatures: PNG (ISO/IEC 15948 ``\\x89PNG\\r\\n\\x1a\\n``), JPEG (``FF D8 FF``), TIFF (``II*\\0`` /
``MM\\0*``, BigTIFF ``II+\\0`` / ``MM\\0+``; a DNG is a TIFF whose first IFD has DNGVersion, tag 50706),
OpenEXR (``76 2F 31 01``), WebP (``RIFF....WEBP``), BMP (``BM``), PNM (``P1``-``P7``), Radiance RGBE
(``#?RADIANCE`` / ``#?RGBE``), and the camera RAW containers that are not TIFF: Canon CR3 (ISO BMFF
``ftypcrx``), CRW (``HEAPCCDR``), Fujifilm RAF (``FUJIFILMCCD-RAW``), Olympus ORF (``IIRO``/``IIRS``/``MMOR``),
Panasonic RW2 (``IIU\\0``), Sigma X3F (``FOVb``), Minolta MRW (``\\0MRM``).
"""

from __future__ import annotations

import struct
from pathlib import Path

__all__ = ["sniff", "FORMAT_NAMES", "suffix_format", "mismatch"]

#: Human names of the formats :func:`sniff` tells apart.
FORMAT_NAMES = {
    "png": "PNG", "jpeg": "JPEG", "tiff": "TIFF", "dng": "DNG (camera RAW)", "raw": "camera RAW", "exr": "OpenEXR",
    "webp": "WebP", "bmp": "BMP", "pnm": "PNM", "hdr": "Radiance HDR", "text": "text",
}

_SUFFIX = {
    ".png": "png", ".jpg": "jpeg", ".jpeg": "jpeg", ".tif": "tiff", ".tiff": "tiff", ".exr": "exr", ".webp": "webp",
    ".bmp": "bmp", ".ppm": "pnm", ".pgm": "pnm", ".pnm": "pnm", ".hdr": "hdr", ".dng": "dng",
}


def suffix_format(path: str | Path) -> str | None:
    """The format a file name promises (``.jpg`` -> ``jpeg``; camera RAW suffixes -> ``raw``, ``.dng`` -> ``dng``)."""
    from .raw import RAW_SUFFIXES

    s = Path(path).suffix.lower()
    if s in _SUFFIX:
        return _SUFFIX[s]
    return "raw" if s in RAW_SUFFIXES else None


def _tiff_is_dng(head: bytes, path: Path) -> bool:
    """True if the TIFF's first IFD carries DNGVersion (tag 50706)."""
    big_endian = head[:2] == b"MM"
    e = ">" if big_endian else "<"
    try:
        with open(path, "rb") as f:
            f.seek(4)
            (off,) = struct.unpack(e + "I", f.read(4))
            f.seek(off)
            (n,) = struct.unpack(e + "H", f.read(2))
            if n > 4096:
                return False
            entries = f.read(12 * n)
        for k in range(len(entries) // 12):
            (tag,) = struct.unpack(e + "H", entries[12 * k : 12 * k + 2])
            if tag == 50706:
                return True
    except (OSError, struct.error):
        return False
    return False


def _looks_like_text(head: bytes) -> bool:
    if not head or b"\x00" in head:
        return False
    try:
        text = head.decode("utf-8")
    except UnicodeDecodeError:
        try:
            text = head.decode("utf-8", errors="strict")[:-3]
        except UnicodeDecodeError:
            return False
    printable = sum(c.isprintable() or c in "\r\n\t" for c in text)
    return printable >= 0.95 * len(text)


def sniff(path: str | Path) -> str | None:
    """The format of a file's content: a key of :data:`FORMAT_NAMES`, or None when the bytes match none.

    TIFF-based camera RAW files other than DNG (NEF, CR2, ARW, PEF ...) sniff as ``tiff``; their suffix
    tells them apart.  Only the first 4 KiB (and, for TIFF, the first IFD) are read.

    Raises:
        OSError: the file cannot be opened.
    """
    path = Path(path)
    with open(path, "rb") as f:
        head = f.read(4096)
    if head.startswith(b"\x89PNG\r\n\x1a\n"):
        return "png"
    if head.startswith(b"\xff\xd8\xff"):
        return "jpeg"
    if head[:4] in (b"II*\x00", b"MM\x00*", b"II+\x00", b"MM\x00+"):
        return "dng" if head[:4] in (b"II*\x00", b"MM\x00*") and _tiff_is_dng(head, path) else "tiff"
    if head[:4] in (b"IIRO", b"IIRS", b"MMOR", b"IIU\x00"):
        return "raw"  # ORF, RW2: TIFF variants with their own magic
    if head.startswith(b"v/1\x01"):
        return "exr"
    if head[:4] == b"RIFF" and head[8:12] == b"WEBP":
        return "webp"
    if head.startswith((b"#?RADIANCE", b"#?RGBE")):
        return "hdr"
    if head[4:12] == b"ftypcrx " or head.startswith(b"FUJIFILMCCD-RAW") or head[6:14] == b"HEAPCCDR" \
            or head.startswith(b"FOVb") or head.startswith(b"\x00MRM"):
        return "raw"
    if head[:2] == b"BM" and len(head) >= 26 and head[14] in (12, 40, 52, 56, 64, 108, 124):  # + a DIB header size
        return "bmp"
    if len(head) >= 3 and head[0:1] == b"P" and head[1:2] in b"1234567" and head[2:3] in b" \t\r\n":
        return "pnm"
    if _looks_like_text(head):
        return "text"
    return None


def mismatch(path: str | Path, content: str | None = "?") -> str | None:
    """A one-line problem when a file's content is not what its suffix says, else None.

    ``PNG data in a .jpg file (rename it .png)``, ``not an image (text)``, ``empty file``, ``not an
    image: its bytes match no image format``.  A camera RAW suffix accepts TIFF-based content and
    containers these signatures do not know (LibRaw decides).

    Args:
        path: The file.
        content: Its :func:`sniff` result when already known.

    Raises:
        OSError: the file cannot be opened.
    """
    want = suffix_format(path)
    got = sniff(path) if content == "?" else content
    suffix = Path(path).suffix or "(no suffix)"
    if got is None and Path(path).stat().st_size == 0:
        return "empty file"
    if got == "text":
        return "not an image (text)"
    if want is None or got == want:
        return None
    if want in ("raw", "dng") and got in ("tiff", "raw", "dng", None):
        return None  # TIFF-based RAW, or a container LibRaw knows better than these signatures
    if got is None:
        return f"not an image: its bytes match no image format (a {suffix} file holds {FORMAT_NAMES[want]})"
    if got in ("dng", "raw"):
        return f"{FORMAT_NAMES[got]} data in a {suffix} file (rename it .dng, or to its camera's RAW suffix, to develop it)"
    return f"{FORMAT_NAMES[got]} data in a {suffix} file (rename it {_SUGGEST[got]})"


_SUGGEST = {"png": ".png", "jpeg": ".jpg", "tiff": ".tif", "exr": ".exr", "webp": ".webp", "bmp": ".bmp", "pnm": ".ppm",
            "hdr": ".hdr"}
