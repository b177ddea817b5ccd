"""The record that travels through a pipeline: pixels, colour encoding, metadata."""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Literal

import numpy as np

__all__ = ["Encoding", "Metadata", "Image", "LINEAR_REC709", "SRGB", "CAMERA_LINEAR", "CFA_MOSAIC"]

Transfer = Literal["linear", "srgb"]
Primaries = Literal["rec709", "rec2020", "ap0", "ap1", "camera", "xyz"]
Referred = Literal["scene", "display"]


@dataclass(frozen=True)
class Encoding:
    """Colour encoding of an image's RGB values.

    Attributes:
        transfer: ``"linear"`` (values proportional to light) or ``"srgb"``
            (IEC 61966-2-1 piecewise OETF applied).
        primaries: RGB primaries / white point: ``"rec709"`` (= sRGB, D65),
            ``"rec2020"``, ``"ap0"`` (ACES2065-1), ``"ap1"`` (ACEScg),
            ``"camera"`` (camera-native RGB of a RAW, before the colour
            matrix), ``"xyz"`` (CIE 1931 XYZ).
        referred: ``"scene"`` (values relate to scene radiance, may exceed 1)
            or ``"display"`` (bounded to [0, 1] for a display).
        cfa: True for an undemosaiced colour-filter-array mosaic (one sample
            per pixel, ``(H, W, 1)``, the colour given by ``meta.cfa_pattern``):
            :data:`CFA_MOSAIC`, read by :func:`restore.io.raw.read_mosaic`.
            Such pixels are not RGB; colour conversions do not apply.
    """

    transfer: Transfer = "srgb"
    primaries: Primaries = "rec709"
    referred: Referred = "display"
    cfa: bool = False

    def __str__(self) -> str:
        return f"{self.transfer}/{self.primaries}/{self.referred}-referred" + ("/cfa" if self.cfa else "")

    def __repr__(self) -> str:  # ``cfa`` only when set: the RGB encodings read as they always did
        cfa = ", cfa=True" if self.cfa else ""
        return f"Encoding(transfer={self.transfer!r}, primaries={self.primaries!r}, referred={self.referred!r}{cfa})"


SRGB = Encoding("srgb", "rec709", "display")
LINEAR_REC709 = Encoding("linear", "rec709", "scene")
CAMERA_LINEAR = Encoding("linear", "camera", "scene")
#: A raw CFA mosaic: linear camera-native samples, 0 = black level, 1 = white level (see :class:`Encoding`).
CFA_MOSAIC = Encoding("linear", "camera", "scene", cfa=True)


@dataclass
class Metadata:
    """What the reader learned about the capture and the file.

    Units are in the field names.  Every field is optional: ``None`` means the
    source did not say.

    Attributes:
        source: Path of the file the pixels came from.
        source_format: ``"png"``, ``"tiff"``, ``"jpeg"``, ``"exr"``, ``"raw"``...
        bit_depth: Bits per sample of the source (8, 16, 32 for float).
        exposure_time_s: Shutter time in seconds.
        iso: ISO speed (arithmetic).
        f_number: Aperture f-number.
        make, model: Camera maker and model.
        capture_time: EXIF DateTimeOriginal as written (``YYYY:MM:DD HH:MM:SS``).
        cfa_pattern: Bayer / X-Trans pattern as a string of colour letters in
            row-major order of the repeating tile, e.g. ``"RGGB"``.
        black_level: Per-CFA-channel black level in raw DN (list of 4).
        white_level: Saturation level in raw DN.
        white_balance: As-shot multipliers (R, G, B, G2), normalised to G = 1.
        exif: Raw EXIF block (TIFF-structured bytes, without the ``Exif\\0\\0``
            header) to copy into outputs that can hold it.
        icc_profile: Embedded ICC profile bytes.
        extra: Anything else (EXR header attributes, RAW colour matrices...).
        noise_profile: Poisson-Gaussian noise model in normalised raw units, a
            :class:`restore.noise.NoiseProfile` (RAW inputs: the pipeline's
            ``develop: {noise: ...}``, or estimated when a stage needs it).
    """

    source: Path | None = None
    source_format: str | None = None
    bit_depth: int | None = None
    exposure_time_s: float | None = None
    iso: float | None = None
    f_number: float | None = None
    make: str | None = None
    model: str | None = None
    capture_time: str | None = None
    cfa_pattern: str | None = None
    black_level: list[float] | None = None
    white_level: float | None = None
    white_balance: list[float] | None = None
    exif: bytes | None = None
    icc_profile: bytes | None = None
    extra: dict[str, Any] = field(default_factory=dict)
    noise_profile: Any = None

    def summary(self) -> dict[str, Any]:
        """Printable fields as plain Python values (numbers, strings, lists, dicts; bytes as their length),
        ready for ``json.dumps`` or a terminal: no numpy scalars or arrays."""
        out: dict[str, Any] = {}
        for k, v in self.__dict__.items():
            if v is None or v == {}:
                continue
            out[k] = _plain(v)
        return out

    def __repr__(self) -> str:
        s = self.summary()
        s.pop("exif", None)
        s.pop("icc_profile", None)
        extra = s.pop("extra", None)
        body = ", ".join(f"{k}={v!r}" for k, v in s.items())
        return f"Metadata({body}{', extra=<' + str(len(extra)) + ' keys>' if extra else ''})"


def _plain(v: Any) -> Any:
    """numpy scalars/arrays, paths and bytes -> plain Python values; floats to 6 significant digits."""
    if isinstance(v, bytes):
        return f"<{len(v)} bytes>"
    if isinstance(v, Path):
        return str(v)
    if isinstance(v, np.ndarray):
        return _plain(v.tolist())
    if isinstance(v, np.generic):
        return _plain(v.item())
    if isinstance(v, float):
        return float(f"{v:.6g}")
    if isinstance(v, (list, tuple)):
        return [_plain(x) for x in v]
    if isinstance(v, dict):
        return {str(k): _plain(x) for k, x in v.items()}
    if isinstance(v, (str, int, bool)) or v is None:
        return v
    return str(v)


@dataclass(repr=False)
class Image:
    """Pixels plus their colour encoding and metadata.

    Attributes:
        pixels: float32 array ``(H, W, C)`` with C = 1 (grey), 3 (RGB) or
            4 (RGBA, alpha straight / un-premultiplied, in [0, 1]).
            Display-referred images hold values in [0, 1]; scene-referred ones
            may exceed 1 (and EXR files may hold small negatives).
        encoding: The :class:`Encoding` of the colour channels (alpha is
            always linear coverage).
        meta: :class:`Metadata` of the source.

    Raises:
        ValueError: on construction, if ``pixels`` is not a float32
            ``(H, W, C)`` array with C in {1, 3, 4}.
    """

    pixels: np.ndarray
    encoding: Encoding = SRGB
    meta: Metadata = field(default_factory=Metadata)

    def __post_init__(self) -> None:
        p = self.pixels
        if not isinstance(p, np.ndarray) or p.ndim != 3 or p.shape[2] not in (1, 3, 4):
            shape = getattr(p, "shape", None)
            raise ValueError(f"Image pixels must be an (H, W, C) array with C in 1, 3, 4; got shape {shape}")
        if p.dtype != np.float32:
            raise ValueError(f"Image pixels must be float32, got {p.dtype}")

    @property
    def height(self) -> int:
        return int(self.pixels.shape[0])

    @property
    def width(self) -> int:
        return int(self.pixels.shape[1])

    @property
    def channels(self) -> int:
        return int(self.pixels.shape[2])

    @property
    def has_alpha(self) -> bool:
        return self.channels == 4

    @property
    def color(self) -> np.ndarray:
        """Colour channels ``(H, W, 1|3)`` (a view, alpha excluded)."""
        return self.pixels[..., :3] if self.channels >= 3 else self.pixels

    @property
    def alpha(self) -> np.ndarray | None:
        """Alpha ``(H, W, 1)`` in [0, 1], or None."""
        return self.pixels[..., 3:4] if self.channels == 4 else None

    def __repr__(self) -> str:
        """A one-line summary (size, encoding, value range, source), not the pixel array."""
        c = self.color
        lo, hi = (float(np.nanmin(c)), float(np.nanmax(c))) if c.size else (0.0, 0.0)
        src = f", source={self.meta.source.name!r}" if self.meta.source else ""
        return (f"Image({self.width}x{self.height}x{self.channels} {self.pixels.dtype}, {self.encoding}, "
                f"range [{lo:.4g}, {hi:.4g}]{src})")

    def with_pixels(self, pixels: np.ndarray, encoding: Encoding | None = None) -> Image:
        """A new Image with other pixels (and optionally encoding), same metadata."""
        return replace(self, pixels=np.ascontiguousarray(pixels, dtype=np.float32), encoding=encoding or self.encoding)
