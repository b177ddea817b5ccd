"""Pipeline stages for exposure brackets (lists of frames) and HDR radiance.

``align`` keeps a list, ``merge`` and ``fuse`` turn it into one image;
``tonemap`` and ``denoise`` work on the merged radiance.  The numerical work
lives in :mod:`restore.hdr`; these classes handle encodings, metadata and
options.
"""

from __future__ import annotations

from dataclasses import replace

import numpy as np

from .. import color
from ..errors import RestoreError
from ..image import LINEAR_REC709, SRGB, Encoding, Image
from . import schema
from .stages import Context, Stage

__all__ = ["AlignStage", "MergeStage", "FuseStage", "TonemapStage", "DenoiseStage", "reference_index"]


def _times(frames: list[Image]) -> list[float]:
    times = [f.meta.exposure_time_s for f in frames]
    if any(t is None or t <= 0 for t in times):
        names = ", ".join(str(f.meta.source.name if f.meta.source else "?") for f in frames)
        raise RestoreError(f"bracket {names}: exposure times missing (set input.exposure_times)")
    return [float(t) for t in times]


def _exposures(frames: list[Image], measured_if_unknown: bool = False) -> list[float]:
    """Relative exposure per frame: time x ISO gain (when every frame has an ISO).

    With ``measured_if_unknown`` and no exposure time on any frame (PNG
    exports without EXIF), each frame's mean linear luminance stands in: it
    orders one scene's frames by exposure, which is all choosing a reference
    frame needs.
    """
    if measured_if_unknown and all(f.meta.exposure_time_s is None for f in frames):
        out = []
        for f in frames:
            lin = f.color if f.encoding.transfer == "linear" else color.srgb_to_linear(np.clip(f.color, 0, 1))
            out.append(float(np.mean(lin)) + 1e-9)
        return out
    times = _times(frames)
    isos = [f.meta.iso for f in frames]
    if all(isos):
        base = min(isos)
        return [t * iso / base for t, iso in zip(times, isos)]
    return times


def reference_index(frames: list[Image], ref: schema.Reference) -> int:
    """Index of the reference frame: ``middle`` (median exposure), ``shortest``, ``longest`` or an index
    (frames without exposure times are ordered by their measured brightness)."""
    order = list(np.argsort(_exposures(frames, measured_if_unknown=True)))
    if isinstance(ref, int):
        if not 0 <= ref < len(frames):
            raise RestoreError(f"reference {ref} out of range for a bracket of {len(frames)}")
        return ref
    return int({"shortest": order[0], "longest": order[-1], "middle": order[len(order) // 2]}[ref])


def _display(frame: Image) -> np.ndarray:
    """sRGB-encoded [0, 1] colour pixels of a frame (linear frames clipped at 1)."""
    if frame.encoding.transfer == "srgb" and frame.encoding.primaries == "rec709":
        return np.clip(frame.color, 0, 1)
    img = color.convert(frame, Encoding("linear", "rec709", frame.encoding.referred)) if frame.encoding.primaries != "rec709" else frame
    lin = img.color if img.encoding.transfer == "linear" else color.srgb_to_linear(img.color)
    return color.linear_to_srgb(np.clip(lin, 0, 1))


class AlignStage(Stage):
    """Register a bracket to its reference frame; shifts go to ``meta.extra['align']``."""

    kind = "align"
    stack = True

    def __init__(self, opts: schema.AlignOptions):
        self.opts = opts

    def __call__(self, frames: list[Image], ctx: Context) -> list[Image]:
        if self.opts.method == "none":
            return frames
        from ..hdr.align import align_ecc, align_mtb

        ref = reference_index(frames, self.opts.reference)
        pixels = [f.pixels for f in frames]
        if self.opts.method == "mtb":
            aligned, shifts = align_mtb(pixels, ref, max_bits=self.opts.max_bits)
            report = [list(map(int, s)) for s in shifts]
        else:
            aligned, mats = align_ecc(pixels, ref, motion=self.opts.motion)
            report = [np.asarray(m).round(4).tolist() for m in mats]
        ctx.notes.append(f"align ({self.opts.method}) to frame {ref}: {report}")
        out = []
        for f, px, r in zip(frames, aligned, report):
            meta = replace(f.meta, extra={**f.meta.extra, "align": {"method": self.opts.method, "reference": ref, "transform": r}})
            out.append(Image(np.ascontiguousarray(px, dtype=np.float32), f.encoding, meta))
        return out


class MergeStage(Stage):
    """Merge a bracket to linear, scene-referred Rec.709 radiance scaled to the reference exposure."""

    kind = "merge"
    stack = True

    def __init__(self, opts: schema.MergeOptions):
        self.opts = opts
        self.model = None

    def prepare(self) -> None:
        if self.opts.method == "model" and self.model is None:
            from ..models import load_model

            m = load_model(self.opts.model)
            if m.info.frames != 3 or m.info.input_encoding != "hdr-ldr-pair":
                raise RestoreError(f"merge model {self.opts.model!r} is {m.arch} ({m.info.task}), not a 3-exposure HDR merge network")
            self.model = m

    def __call__(self, frames: list[Image], ctx: Context) -> Image:
        if len(frames) < 2:
            raise RestoreError("merge needs at least 2 exposures")
        ref = reference_index(frames, self.opts.reference)
        method = self.opts.method
        linear = all(f.encoding.transfer == "linear" for f in frames)
        if method == "raw-linear":
            from ..hdr.merge import merge_linear

            if not linear:
                raise RestoreError("raw-linear merge needs linear frames (RAW files, or EXR); use debevec for PNG/JPEG brackets")
            cols = [color.convert(f, Encoding("linear", "rec709", "scene")).color if f.encoding.primaries not in ("rec709", "camera") else f.color for f in frames]
            rad = merge_linear(cols, _exposures(frames), clip=self.opts.clip, deghost=self.opts.deghost, reference=ref)
            enc = Encoding("linear", frames[0].encoding.primaries if frames[0].encoding.primaries == "camera" else "rec709", "scene")
        elif method in ("debevec", "robertson"):
            from ..hdr.merge import merge_ldr, recover_response

            if linear:
                raise RestoreError(f"{method} recovers a camera response from display-referred frames; these are linear: use method raw-linear")
            disp = [_display(f) for f in frames]
            u8 = [np.floor(d * 255 + 0.5).astype(np.uint8) for d in disp]
            times = _times(frames)
            response = recover_response(u8, times, method=method, smoothness=self.opts.smoothness)
            rad = merge_ldr(disp, times, response, deghost=self.opts.deghost, reference=ref, weighting=self.opts.weighting)
            enc = LINEAR_REC709
        else:
            rad = self._network(frames, ctx)
            enc = LINEAR_REC709
        meta = replace(frames[ref].meta, extra={**frames[ref].meta.extra, "merge": {"method": method, "frames": len(frames), "reference": ref}})
        return Image(np.ascontiguousarray(rad, dtype=np.float32), enc, meta)

    def _network(self, frames: list[Image], ctx: Context) -> np.ndarray:
        from ..hdr.network import merge_network
        from ..tiling import TileSpec, resolve_device, resolve_precision

        self.prepare()
        if len(frames) != 3:
            order = np.argsort(_times(frames))
            frames = [frames[order[0]], frames[order[len(order) // 2]], frames[order[-1]]]
            ctx.notes.append("network merge: used the shortest, middle and longest of the bracket")
        m = self.model
        device = resolve_device(ctx.device or self.opts.device)
        dtype = resolve_precision(self.opts.precision, device, m.supports_half, m.supports_bfloat16, arch=m.arch)
        overlap = self.opts.overlap if self.opts.overlap is not None else m.info.overlap
        tile = self.opts.tile
        if "tile" not in self.opts.model_fields_set and m.tiling_discouraged:
            from .stages import warmup, whole_or_large_tiles

            with warmup(ctx):
                tile, overlap = whole_or_large_tiles(m, frames[0].pixels.shape, device, dtype, overlap, None, ctx.notes)
        if tile and 2 * overlap >= tile:
            overlap = tile // 2 - 1
        return merge_network(
            m.module.to(device), [_display(f) for f in frames], _times(frames),
            spec=TileSpec(tile, overlap), multiple_of=m.multiple_of, device=device, dtype=dtype, progress=ctx.tile_progress,
        )


class FuseStage(Stage):
    """Mertens exposure fusion straight to a display-referred sRGB image."""

    kind = "fuse"
    stack = True

    def __init__(self, opts: schema.FuseOptions):
        self.opts = opts

    def __call__(self, frames: list[Image], ctx: Context) -> Image:
        from ..hdr.fusion import fuse_mertens

        ref = reference_index(frames, "middle")
        out = fuse_mertens([_display(f) for f in frames], contrast_weight=self.opts.contrast, saturation_weight=self.opts.saturation, exposure_weight=self.opts.exposure)
        meta = replace(frames[ref].meta, bit_depth=max(f.meta.bit_depth or 8 for f in frames) if all(f.meta.bit_depth in (8, 16) for f in frames) else 16)
        return Image(np.ascontiguousarray(out, dtype=np.float32), SRGB, meta)


class TonemapStage(Stage):
    """Tone map linear radiance to an sRGB-encoded display image in [0, 1] (alpha kept)."""

    kind = "tonemap"

    def __init__(self, opts: schema.TonemapOptions):
        self.opts = opts

    def __call__(self, image: Image, ctx: Context) -> Image:
        from ..hdr.tonemap import tonemap

        lin = color.convert(image, Encoding("linear", "rec709", image.encoding.referred)) if (image.encoding.transfer != "linear" or image.encoding.primaries != "rec709") else image
        if lin.channels < 3:
            raise RestoreError("tone mapping needs RGB")
        try:
            disp = tonemap(lin.color, self.opts.operator, **self.opts.params)
        except ValueError as e:
            raise RestoreError(f"tonemap {self.opts.operator}: {e}") from None
        out = color.linear_to_srgb(np.clip(disp, 0, 1))
        if image.alpha is not None:
            out = np.concatenate([out, image.alpha], axis=2)
        meta = replace(image.meta, bit_depth=image.meta.bit_depth if image.meta.bit_depth in (8, 16) else 16)
        return Image(np.ascontiguousarray(out, dtype=np.float32), SRGB, meta)


class DenoiseStage(Stage):
    """Intel Open Image Denoise on linear HDR radiance (``pip install pyoidn``)."""

    kind = "denoise"

    def __init__(self, opts: schema.DenoiseOptions):
        self.opts = opts

    def prepare(self) -> None:
        try:
            import pyoidn  # noqa: F401
        except ImportError:
            raise RestoreError("denoise: method oidn needs the pyoidn package (pip install pyoidn)") from None

    def __call__(self, image: Image, ctx: Context) -> Image:
        from ..hdr.denoise import denoise_oidn

        if image.encoding.transfer != "linear":
            raise RestoreError("denoise (oidn) works on linear HDR radiance; put it after merge")
        out = image.pixels.copy()
        out[..., :3] = denoise_oidn(image.color)
        return image.with_pixels(out)
