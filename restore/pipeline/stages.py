"""Pipeline stages.  Each takes an :class:`~restore.image.Image` and returns one.

A stage declares the encoding it works in and converts what it receives, so
a model trained on sRGB [0, 1] images never sees linear radiance above 1 by
accident, and an EXR output is always linear.
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import cv2
import numpy as np

from .. import color
from ..engine.results import WARMUP_BEGIN, WARMUP_END
from ..errors import OutputError, RestoreError
from ..image import Encoding, Image
from ..io import RawOptions, write
from . import schema

__all__ = ["Context", "Stage", "DevelopStage", "ModelStage", "ResizeStage", "ConvertStage", "ExposureStage", "WriteStage"]


@dataclass
class Context:
    """Per-input facts stages need (output folder, template fields, progress)."""

    out_dir: Path | None = None
    fields: dict = field(default_factory=dict)
    overwrite: bool = False
    tile_progress: Callable[[int, int], None] | None = None
    outputs: list[Path] = field(default_factory=list)
    device: str | None = None
    notes: list[str] = field(default_factory=list)
    stage_progress: Callable[[str], None] | None = None


@contextlib.contextmanager
def warmup(ctx: "Context"):
    """Mark a one-time warm-up (see :data:`restore.engine.results.WARMUP_BEGIN`): the worker's stall limit
    pauses while it runs."""
    if ctx.stage_progress:
        ctx.stage_progress(WARMUP_BEGIN)
    try:
        yield
    finally:
        if ctx.stage_progress:
            ctx.stage_progress(WARMUP_END)


class Stage:
    """Base class: ``__call__(image, ctx) -> image``.

    ``stack = True`` stages take a whole bracket (``list[Image]``) instead.
    """

    kind = "stage"
    stack = False

    def __call__(self, image: Image, ctx: Context) -> Image:  # pragma: no cover - interface
        raise NotImplementedError

    def prepare(self) -> None:
        """Load what the stage needs (models) before the first file; raise early."""


class DevelopStage(Stage):
    """RAW development options (applied by the reader) and, for other inputs, conversion to linear."""

    kind = "develop"

    def __init__(self, opts: schema.DevelopOptions):
        self.opts = opts
        wb = opts.white_balance
        self.raw_options = RawOptions(
            white_balance=tuple(wb) if isinstance(wb, list) else wb,
            demosaic=opts.demosaic,
            output=opts.output,
            half_size=opts.half_size,
        )

    def __call__(self, image: Image, ctx: Context) -> Image:
        if image.meta.source_format == "raw" or self.opts.output == "camera":
            return image
        return color.convert(image, Encoding("linear", "rec709", image.encoding.referred))


#: Smallest tile a global-attention model gets, even when the memory budget asks for less: smaller tiles see
#: too little of the image for its global statistics (benchmarks/whole_vs_tiled.py, weather-starter on the
#: real RainDrop pairs: tiles of 128/192 px lose 0.8/1.1 dB against the whole image and fall below the input
#: on the worst image; 256 px is within 0.01 dB).  A 256 px tile of the starters needs well under 1 GiB.
MIN_GLOBAL_TILE = 256


def wide_overlap(model, tile: int, overlap: int) -> int:
    """The overlap for tiles of a global-attention model: at least 1/8 of the tile (rounded up to the size
    multiple), so neighbouring tiles' global statistics blend over a wide band."""
    mult = max(1, model.multiple_of)
    return max(overlap, -(-(tile // 8) // mult) * mult)


def whole_or_large_tiles(model, shape, device, dtype, overlap: int, memory: str | None, notes: list[str]) -> tuple[int, int]:
    """Whole image for an architecture that discourages tiling (global attention), unless it does not fit.

    The model's memory curve (:func:`restore.memory.curve_for`, measured once per machine and cached)
    predicts the whole image's peak; above the budget (``memory``, default
    :func:`restore.memory.default_budget`) the largest tile that fits is used (never below
    :data:`MIN_GLOBAL_TILE`), with an overlap of at least 1/8 of the tile so neighbouring tiles' global
    statistics blend (what that costs: ``benchmarks/whole_vs_tiled.py``).

    Args:
        model: The :class:`~restore.models.RestorationModel`.
        shape: The input's ``(H, W, ...)``.
        device, dtype: Where and how it runs.
        overlap: The overlap otherwise used (input pixels).
        memory: The step's ``memory`` option (e.g. ``"4GB"``) or None.
        notes: Gets a line when tiles are used.

    Returns:
        ``(tile, overlap)``; tile 0 = whole image.
    """
    from ..memory import curve_for, default_budget, parse_bytes, tile_for_budget

    mult = max(1, model.multiple_of)
    h, w = shape[0], shape[1]
    pixels = (-(-h // mult) * mult) * (-(-w // mult) * mult)
    budget = parse_bytes(memory) if memory else default_budget(device)
    curve = curve_for(model, device, dtype)
    if curve is None or curve.predict(pixels) <= budget:
        return 0, overlap
    tile = max(tile_for_budget(curve, budget, multiple_of=mult, hi=8192), -(-MIN_GLOBAL_TILE // mult) * mult)
    wide = wide_overlap(model, tile, overlap)
    notes.append(f"whole image ({w}x{h}) would need {curve.predict(pixels) / 2**30:.1f} GiB, over the "
                 f"{budget / 2**30:.1f} GiB budget: tiles of {tile} px with overlap {wide}")
    return tile, wide


class ModelStage(Stage):
    """Run a restoration model over the image, tiled (see :mod:`restore.tiling`)."""

    kind = "model"

    def __init__(self, opts: schema.ModelOptions):
        self.opts = opts
        self.model = None
        self.vgg = None
        self._compiled = None
        self._thread_choice: tuple[int, str] | None = None
        self._thread_noted = False

    def prepare(self) -> None:
        if self.model is None:
            from ..models import load_model
            from ..tiling import resolve_device

            resolve_device(self.opts.device)  # a device this machine lacks fails once, here, not on every file
            model = load_model(self.opts.name)
            if model.info.frames != 1:
                raise RestoreError(f"model {self.opts.name!r} takes {model.info.frames} frames; use it in a merge step")
            extra = set(model.info.extra_inputs)
            if "vgg19-hypercolumn" in extra and model.input_channels == 3:
                extra.discard("vgg19-hypercolumn")  # DRNet trained without --hyper takes plain RGB
            if extra - {"vgg19-hypercolumn"}:
                raise RestoreError(f"model {self.opts.name!r} needs {', '.join(extra)}, which the model step cannot provide")
            if "vgg19-hypercolumn" in extra:
                if not self.opts.vgg19:
                    raise RestoreError(
                        f"model {self.opts.name!r} takes a VGG19 hypercolumn: set `vgg19:` in the model step to the path of "
                        "torchvision's ImageNet VGG19 weights (.pth/.safetensors); restore never downloads them"
                    )
                from ..models.archs.rrformer import MissingVGG19Error, _resolve_vgg

                try:
                    self.vgg = _resolve_vgg(self.opts.vgg19)
                except (MissingVGG19Error, ValueError, RuntimeError, OSError) as e:
                    raise RestoreError(f"{self.opts.vgg19}: cannot use as VGG19 weights: {str(e).splitlines()[0]}") from None
            self.model = model

    # -- colour handling -------------------------------------------------
    def _encode(self, image: Image) -> tuple[np.ndarray, Callable[[np.ndarray], np.ndarray], Encoding]:
        """Model-space colour pixels (H, W, C) and the function that maps model output back."""
        want = self.model.info.input_encoding
        enc = image.encoding
        px = image.color
        if want == "raw-rgb":
            if enc.transfer != "linear":
                raise RestoreError(f"model {self.opts.name!r} takes linear camera RGB; develop the RAW with output: camera")
            return np.clip(px, 0, 1), lambda y: y, enc
        if enc.primaries not in ("rec709", "camera") and px.shape[2] == 3:
            image = color.convert(image, Encoding(enc.transfer, "rec709", enc.referred))
            enc, px = image.encoding, image.color
        if want == "linear":
            lin = color.srgb_to_linear(px) if enc.transfer == "srgb" else px
            back = (lambda y: color.linear_to_srgb(y)) if enc.transfer == "srgb" else (lambda y: y)
            return np.clip(lin, 0, 1), back, enc
        # model wants sRGB-encoded [0, 1]
        if enc.transfer == "srgb":
            return np.clip(px, 0, 1), lambda y: y, enc
        hdr = self.opts.hdr
        peak = float(np.max(px, initial=0.0))
        if hdr == "log" or (hdr == "auto" and peak > 1.0):
            peak = max(peak, 1.0)
            return color.hdr_encode(px, peak), lambda y: color.hdr_decode(y, peak), enc
        return color.linear_to_srgb(np.clip(px, 0, 1)), color.srgb_to_linear, enc

    def _run(self, hwc: np.ndarray, ctx: Context) -> np.ndarray:
        import torch

        from ..tiling import TileSpec, resolve_device, resolve_precision

        m = self.model
        device = resolve_device(ctx.device or self.opts.device)
        dtype = resolve_precision(self.opts.precision, device, m.supports_half, m.supports_bfloat16, arch=m.arch)
        module = m.module.to(device)
        overlap = self.opts.overlap if self.opts.overlap is not None else m.info.overlap
        tile = self.opts.tile
        context = self.opts.context if self.opts.context is not None else m.info.context
        if self.opts.tile and "tile" not in self.opts.model_fields_set and m.tiling_discouraged:
            # global attention / pooling: tiles change the result; whole image unless it does not fit in memory
            with warmup(ctx):  # the memory curve is measured once per machine
                tile, overlap = whole_or_large_tiles(m, hwc.shape, device, dtype, overlap, self.opts.memory, ctx.notes)
        if tile == "auto" and not m.fixed_size:
            with warmup(ctx):
                tile = self._auto_tile(device, dtype, context, ctx)
        if m.fixed_size:  # the network runs only at its native size: tiles of exactly that size
            tile = m.fixed_size
            overlap = min(overlap, min(tile) // 2 - 1)
        elif tile and overlap * 2 >= tile:
            overlap = max(0, tile // 2 - 1)
        spec = TileSpec(tile=tile, overlap=overlap, batch=self.opts.batch, context=0 if m.fixed_size else context,
                        align=m.tile_align)
        c = hwc.shape[2]
        cin = m.input_channels
        eager_forward = module
        if self.vgg is not None:  # RRFormer: the network sees cat(image, VGG19 hypercolumn); not compiled
            from ..models.archs.rrformer import build_hypercolumn_input

            vgg = self.vgg.to(device)
            cin = 3

            def eager_forward(x, _module=module, _vgg=vgg):
                return _module(build_hypercolumn_input(x, _vgg))
        base_forward = eager_forward
        if self.opts.compile and self.vgg is None:
            base_forward = self._compiled_forward(module, ctx)
        if cin == c:
            groups = [hwc]
        elif cin == 3 and c == 1:
            groups = [np.repeat(hwc, 3, axis=2)]
        elif cin == 1:
            groups = [hwc[:, :, i : i + 1] for i in range(c)]
        else:
            raise RestoreError(f"model {self.opts.name!r} takes {cin} channels, image has {c}")
        threads_before = torch.get_num_threads()
        if device.type == "cpu":
            # timed eagerly: a compiled forward would compile once more for the timing tile's shape
            torch.set_num_threads(self._threads(eager_forward, cin, dtype, ctx))
        try:
            outs = self._run_groups(groups, base_forward, m, spec, device, dtype, ctx)
        finally:
            torch.set_num_threads(threads_before)
        if device.type == "cuda":
            torch.cuda.empty_cache()
        out = np.concatenate(outs, axis=2) if cin == 1 else outs[0]
        if cin == 3 and c == 1:
            out = out.mean(axis=2, keepdims=True)
        return out

    def _threads(self, forward, cin: int, dtype, ctx: Context) -> int:
        """``threads``: the set count, or the measured best (cached; noted once per stage)."""
        import torch

        if self.opts.threads != "auto":
            return int(self.opts.threads)
        if self._thread_choice is None:
            from ..threads import threads_for

            m = self.model
            side = m.fixed_size or (max(64, -(-max(m.min_size, 1) // max(m.multiple_of, 1)) * max(m.multiple_of, 1)),) * 2
            sample = torch.rand(1, cin, *side, generator=torch.Generator().manual_seed(0))
            autocast = dtype in (torch.float16, torch.bfloat16)

            def once():
                with torch.inference_mode(), torch.autocast("cpu", dtype=dtype, enabled=autocast):
                    forward(sample)

            with warmup(ctx):  # timed once per machine and model, cached
                self._thread_choice = threads_for(f"{m.arch}/{m.shape_key}/{str(dtype).replace('torch.', '')}", once)
        n, note = self._thread_choice
        if not self._thread_noted:
            ctx.notes.append(note)
            self._thread_noted = True
        return n

    def _run_groups(self, groups, base_forward, m, spec, device, dtype, ctx: Context) -> list:
        from ..tiling import run_tiled

        outs = []
        for g in groups:
            y = run_tiled(
                base_forward, g, scale=m.scale, out_channels=m.output_channels, spec=spec,
                multiple_of=m.multiple_of, min_size=m.min_size, device=device, dtype=dtype,
                progress=ctx.tile_progress, layout="hwc",
                on_oom=lambda a, b: ctx.notes.append(f"out of memory at tile {a}: retried with tile {b}"),
            )
            outs.append(y)
        return outs

    def _auto_tile(self, device, dtype, context: int, ctx: Context) -> int:
        """``tile: auto``: the largest tile the memory budget allows by the model's measured curve."""
        from ..memory import curve_for, default_budget, parse_bytes, tile_for_budget

        key = (str(device), str(dtype))
        cache = self.__dict__.setdefault("_auto", {})
        if key not in cache:
            m = self.model
            budget = parse_bytes(self.opts.memory) if self.opts.memory else default_budget(device)
            curve = curve_for(m, device, dtype)
            if curve is None:
                cache[key] = (256, "tile auto: peak memory cannot be measured here; tile 256")
            else:
                t = tile_for_budget(curve, budget, context=context, batch=self.opts.batch, multiple_of=max(1, m.multiple_of))
                cache[key] = (t, f"tile auto: {t} px for a {budget / 2**30:.2f} GiB budget (memory curve {curve.describe()})")
            ctx.notes.append(cache[key][1])
        return cache[key][0]

    def _compiled_forward(self, module, ctx: Context):
        """``torch.compile(module)`` (static shapes; kernels cached under the user cache), falling
        back to eager - with a note - where compilation fails (no C++ compiler, an unsupported op)."""
        import os

        import torch

        if self._compiled is None:
            from ..cache import cache_dir

            cache = cache_dir("inductor")
            try:  # torch fills the variable with its /tmp default once it has looked; only a user's own choice wins
                from torch._inductor.runtime.cache_dir_utils import default_cache_dir

                default = os.path.abspath(default_cache_dir())
            except Exception:  # pragma: no cover - other torch versions
                default = None
            if os.environ.get("TORCHINDUCTOR_CACHE_DIR") in (None, default):
                os.environ["TORCHINDUCTOR_CACHE_DIR"] = str(cache)
            self._compiled = {"fn": torch.compile(module, dynamic=False), "failed": None, "seen": set()}
        state = self._compiled

        def forward(x):
            if state["failed"] is None:
                try:
                    shape = tuple(x.shape)
                    if shape in state["seen"]:
                        return state["fn"](x)
                    with warmup(ctx):  # compiling for a new tile shape: tens of seconds on a CPU, once (kernels cached)
                        y = state["fn"](x)
                    state["seen"].add(shape)
                    return y
                except (MemoryError, torch.cuda.OutOfMemoryError):
                    raise  # the tiler halves the tile
                except Exception as e:  # compilation errors surface at the first call
                    state["failed"] = f"torch.compile failed ({type(e).__name__}): ran eagerly"
                    ctx.notes.append(state["failed"])
            return module(x)

        return forward

    def __call__(self, image: Image, ctx: Context) -> Image:
        self.prepare()
        px, back, enc = self._encode(image)
        y = self._run(px, ctx)
        if self.model.info.output_range != "unbounded":
            y = np.clip(y, 0.0, 1.0)
        y = back(y)
        if image.alpha is not None:
            s = self.model.scale
            a = image.alpha
            if self.opts.alpha == "model" and self.model.input_channels == 3:
                a_up = self._run(np.repeat(a, 3, axis=2), ctx).mean(axis=2, keepdims=True)
            elif s == 1:
                a_up = a
            else:
                a_up = cv2.resize(a[:, :, 0], (a.shape[1] * s, a.shape[0] * s), interpolation=cv2.INTER_LANCZOS4)[:, :, None]
            y = np.concatenate([y, np.clip(a_up, 0, 1)], axis=2)
        return image.with_pixels(y, enc)


_FILTERS = {
    "lanczos": cv2.INTER_LANCZOS4,
    "bicubic": cv2.INTER_CUBIC,
    "bilinear": cv2.INTER_LINEAR,
    "area": cv2.INTER_AREA,
    "nearest": cv2.INTER_NEAREST,
}


class ResizeStage(Stage):
    """Resize (OpenCV); in linear light by default, alpha premultiplied while filtering."""

    kind = "resize"

    def __init__(self, opts: schema.ResizeOptions):
        self.opts = opts

    def __call__(self, image: Image, ctx: Context) -> Image:
        o = self.opts
        h, w = image.height, image.width
        if o.scale is not None:
            nw, nh = max(1, round(w * o.scale)), max(1, round(h * o.scale))
        else:
            nw = o.width or max(1, round(w * o.height / h))
            nh = o.height or max(1, round(h * o.width / w))
        from ..io.limits import max_pixels

        if nw * nh > max_pixels():
            raise RestoreError(f"resize to {nw}x{nh} ({nw * nh / 1e6:.0f} MP) exceeds the limit of {max_pixels() / 1e6:.0f} MP "
                               "(set RESTORE_MAX_PIXELS to raise it)")
        px = image.pixels.copy()
        c = min(3, px.shape[2])
        srgb = image.encoding.transfer == "srgb" and o.linear
        if srgb:
            px[..., :c] = color.srgb_to_linear(px[..., :c])
        if image.has_alpha:
            px[..., :3] *= px[..., 3:4]
        out = cv2.resize(px, (nw, nh), interpolation=_FILTERS[o.filter])
        if out.ndim == 2:
            out = out[:, :, None]
        if image.has_alpha:
            a = np.clip(out[..., 3:4], 0, 1)
            out[..., :3] = np.where(a > 1e-6, out[..., :3] / np.maximum(a, 1e-6), 0.0)
            out[..., 3:4] = a
        if srgb:
            out[..., :c] = color.linear_to_srgb(out[..., :c])
        if image.encoding.referred == "display":
            out = np.clip(out, 0, 1)
        return image.with_pixels(out)


class ConvertStage(Stage):
    kind = "convert"

    def __init__(self, opts: schema.ConvertOptions):
        self.opts = opts

    def __call__(self, image: Image, ctx: Context) -> Image:
        e = image.encoding
        return color.convert(image, Encoding(self.opts.transfer or e.transfer, self.opts.primaries or e.primaries, e.referred))


class ExposureStage(Stage):
    kind = "exposure"

    def __init__(self, opts: schema.ExposureOptions):
        self.opts = opts

    def __call__(self, image: Image, ctx: Context) -> Image:
        e = image.encoding
        lin = color.convert(image, Encoding("linear", e.primaries, e.referred)) if e.transfer != "linear" else image
        out = color.apply_exposure(lin, self.opts.ev)
        return color.convert(out, e) if e.transfer != "linear" else out


def template_fields(template: str) -> set[str]:
    """The field names a write template uses (``"{dir}/{stem}.png"`` -> ``{"dir", "stem"}``)."""
    import string

    try:
        return {f for _, f, _, _ in string.Formatter().parse(template) if f is not None}
    except ValueError:
        return set()


#: Longest output file name in bytes: NAME_MAX (255) less the temporary-file prefix of an atomic write
#: (``.restore-tmp-xxxxxxxx-``, 22 bytes), so the hidden file being written fits too.
MAX_NAME_BYTES = 230


def fit_name(rel: str) -> str:
    """Shorten the file name of a relative output path that would exceed :data:`MAX_NAME_BYTES`: the stem
    is cut and given ``~`` and 8 hex digits of its SHA-1, so different long names stay different."""
    import hashlib

    head, sep, name = rel.rpartition("/")
    raw = name.encode("utf-8", "surrogateescape")
    if len(raw) <= MAX_NAME_BYTES:
        return rel
    p = Path(name)
    tag = "~" + hashlib.sha1(raw).hexdigest()[:8]
    room = MAX_NAME_BYTES - len(p.suffix.encode("utf-8", "surrogateescape")) - len(tag)
    stem = p.stem.encode("utf-8", "surrogateescape")[:room].decode("utf-8", "ignore")
    return f"{head}{sep}{stem}{tag}{p.suffix}"


def output_path(template: str, out_dir: Path, fields: dict) -> Path:
    """Expand a write template and make sure the result stays inside ``out_dir``.

    The input's folder relative to the input folder (``fields["dir"]``) is
    mirrored below ``out_dir`` unless the template places it itself with
    ``{dir}``: a card's ``100CANON/IMG_0001.CR2`` and ``101CANON/IMG_0001.CR2``
    get outputs in ``out/100CANON/`` and ``out/101CANON/``.

    Raises:
        OutputError: unknown field, or a path that leaves the output folder.
    """
    try:
        rel = template.format(**fields)
    except (KeyError, IndexError, ValueError) as e:
        raise OutputError(template, f"bad path template field {e}") from None
    sub_dir = fields.get("dir") or "."
    if sub_dir != "." and "dir" not in template_fields(template):
        rel = f"{sub_dir}/{rel}"
    rel = fit_name(rel)
    out_dir = Path(out_dir)
    p = (out_dir / rel).resolve()
    root = out_dir.resolve()
    if Path(rel).is_absolute() or ".." in Path(rel).parts or (p != root and root not in p.parents):
        raise OutputError(rel, "output path leaves the output folder; refused")
    return out_dir / rel


class WriteStage(Stage):
    """Write the current image (atomically) under the output folder."""

    kind = "write"

    def __init__(self, opts: schema.WriteOptions):
        self.opts = opts

    def path_for(self, ctx: Context) -> Path:
        if ctx.out_dir is None:
            raise OutputError(self.opts.path, "no output folder given")
        return output_path(self.opts.path, ctx.out_dir, ctx.fields)

    def __call__(self, image: Image, ctx: Context) -> Image:
        if ctx.out_dir is None:  # in-memory use (Python API): writing is skipped
            return image
        p = self.path_for(ctx)
        o = self.opts
        write(image, p, bit_depth=o.bit_depth, dtype=o.dtype, compression=o.compression, quality=o.quality)
        ctx.outputs.append(p)
        return image
