"""Tiled inference with overlap blending.

The image stays on the host.  It is cut into tiles that overlap by
``overlap`` input pixels; tiles go to the device in batches; each output tile
is weighted across the region it shares with each neighbour: zero on the
outer quarter (a tile's edge pixels lack context), a raised-cosine (Hann)
ramp over the middle half, one on the inner quarter - complementary weights
that sum to one - and accumulated in float32 at output resolution, then
divided by the accumulated weight.  Tiles at the image border get no ramp on
the border side.  A model whose receptive field (input pixels) is at most a
quarter of the overlap therefore gives tiled output equal to whole-image
output.

Size requirements: the image is reflect-padded at its bottom/right edge up to
the model's ``multiple_of`` and ``minimum`` (exactly what whole-image
inference pads), so a tile covering the whole image reproduces whole-image
inference bit for bit; the padding is cropped from the output.

Precision: ``"auto"`` is float32 on CPU; on CUDA bfloat16 where the
descriptor says the architecture supports it (and the GPU does), else
float16 where supported, else float32.  Low precision runs under
``torch.autocast`` so numerically sensitive ops stay in float32.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Callable, Literal

import numpy as np
import torch
import torch.nn.functional as F

from .errors import RestoreError

__all__ = ["TileSpec", "plan_axis", "blend_ramp", "run_tiled", "resolve_precision", "resolve_device"]

Precision = Literal["auto", "fp32", "fp16", "bf16"]


@dataclass(frozen=True)
class TileSpec:
    """Tiling parameters.

    Attributes:
        tile: Tile edge in input pixels (0 = whole image as one tile), or
            ``(height, width)`` for rectangular tiles (models with a fixed
            input size).  Rounded down to the model's ``multiple_of``.
        overlap: Pixels (input resolution) shared by neighbouring tiles; the
            blend ramp spans the shared region.
        batch: Tiles per forward pass.
        context: Extra input pixels given to the model around each tile and
            cropped from its output (``tile_pad`` in the reference inference scripts), so a
            convolutional receptive field sees real neighbours; clipped at
            the image border, where whole-image inference has none either.
        uniform: Give every tile's input window one shape: with ``context``, a border window is shifted
            inside the image instead of clipped (the border tile gets more context on its inner side, which
            changes nothing).  For paths that build per input shape (a compiled graph, an ONNX export and
            session: :data:`restore.backends.PER_SHAPE`), where clipped windows cost up to four builds;
            PyTorch eager computes the clipped windows, 8-11 % less work for the RAW denoiser's 1024 tiles.
        align: The size the model pads its input to internally (its
            attention window, e.g. 32 for an 8x32 split window), which ``multiple_of`` does not
            show: balanced tiles are rounded up to it, so shrinking a tile never
            just trades real neighbours for the model's own padding.
    """

    tile: int | tuple[int, int] = 256
    overlap: int = 32
    batch: int = 1
    context: int = 0
    align: int = 1
    uniform: bool = False


def plan_axis(length: int, tile: int, overlap: int) -> list[int]:
    """Start offsets of tiles along one axis.

    Tiles of size ``tile`` step by ``tile - overlap``; the last tile is aligned
    to the end, so every pixel is covered and no tile leaves the image.

    Args:
        length: Axis length in pixels.
        tile: Tile size (>= 1).
        overlap: Overlap, ``0 <= overlap < tile``.

    Returns:
        Sorted, unique start offsets.

    Raises:
        ValueError: if ``overlap >= tile`` or ``tile < 1``.
    """
    if tile < 1:
        raise ValueError(f"tile must be >= 1, got {tile}")
    if not 0 <= overlap < tile:
        raise ValueError(f"overlap must be in [0, tile), got overlap {overlap} with tile {tile}")
    if length <= tile:
        return [0]
    stride = tile - overlap
    n = math.ceil((length - tile) / stride) + 1
    starts = [min(i * stride, length - tile) for i in range(n)]
    return sorted(set(starts))


def balanced_tile(length: int, tile: int, overlap: int, multiple: int = 1, minimum: int = 1) -> int:
    """The smallest tile (a multiple of ``multiple``, >= ``minimum``) that covers ``length`` with as
    many tiles as ``tile`` needs.

    With a fixed tile the last tile is pushed back to the end and overlaps its
    neighbour by far more than ``overlap`` (512 px, tile 128, overlap 16: five
    tiles, 1.56x the pixels computed); spreading the same number of tiles evenly
    shrinks them (120 px: 1.37x) at the same overlap.  Returns ``tile`` when
    nothing is gained or one tile covers ``length``.
    """
    if length <= tile or not 0 <= overlap < tile:
        return tile
    n = len(plan_axis(length, tile, overlap))
    t = -(-(length + (n - 1) * overlap) // n)
    t = max(-(-t // multiple) * multiple, minimum, 2 * overlap + 1)
    if t < tile and len(plan_axis(length, t, overlap)) <= n:
        return t
    return tile


def blend_ramp(n: int) -> np.ndarray:
    """Raised-cosine ramp of ``n`` samples rising from ~0 to ~1.

    ``r[i] = sin^2(pi/2 * (i + 0.5) / n)``; ``r + r[::-1] == 1`` exactly in
    real arithmetic, so two tiles sharing ``n`` pixels blend to weight one.
    """
    i = np.arange(n, dtype=np.float64)
    return (np.sin(0.5 * np.pi * (i + 0.5) / n) ** 2).astype(np.float32)


def _shared_weights(shared: int, scale: int) -> np.ndarray:
    """Weight of the *later* tile across a region of ``shared`` input pixels (output resolution).

    The first and last quarter of the shared region are hard (0 then 1): a
    tile's outermost pixels lack context, so they never contribute while the
    neighbour has pixels with full context there.  The middle half ramps with
    :func:`blend_ramp`.  The earlier tile gets ``1 - w``.
    """
    margin = (shared // 4) * scale
    n = shared * scale
    w = np.zeros(n, dtype=np.float32)
    ramp = n - 2 * margin
    if ramp > 0:
        w[margin : margin + ramp] = blend_ramp(ramp)
    w[margin + max(ramp, 0) :] = 1.0
    return w


def _axis_weights(starts: list[int], tile: int, scale: int) -> list[np.ndarray]:
    """Per-tile 1-D weights at output resolution along one axis."""
    out = []
    n_out = tile * scale
    for j, s in enumerate(starts):
        w = np.ones(n_out, dtype=np.float32)
        if j > 0:
            shared = starts[j - 1] + tile - s
            if shared > 0:
                w[: shared * scale] = _shared_weights(shared, scale)
        if j + 1 < len(starts):
            shared = s + tile - starts[j + 1]
            if shared > 0:
                w[n_out - shared * scale :] = np.minimum(w[n_out - shared * scale :], 1.0 - _shared_weights(shared, scale))
        out.append(w)
    return out


def resolve_device(device: str | torch.device | None = "auto") -> torch.device:
    """``"auto"`` -> CUDA if available, else CPU; ``cpu``, ``cuda``, ``cuda:N``, ``mps`` when this machine has it.

    Raises:
        RestoreError: another name (``tpu``, ``meta``), or a device this machine does not have (``cuda:99``).
    """
    from .errors import RestoreError

    if device in (None, "auto"):
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if isinstance(device, torch.device):
        return device
    s = str(device)
    import re

    m = re.fullmatch(r"(cpu|mps|cuda)(?::([0-9]+))?", s)
    if not m or (m.group(2) is not None and m.group(1) != "cuda"):
        raise RestoreError(f"device {s!r}: use auto, cpu, cuda, cuda:N or mps")
    if m.group(1) == "cuda":
        n = torch.cuda.device_count() if torch.cuda.is_available() else 0
        idx = int(m.group(2) or 0)
        if idx >= n:
            have = f"{n} CUDA device{'s' if n != 1 else ''} (cuda:0 .. cuda:{n - 1})" if n else "no CUDA device"
            raise RestoreError(f"device {s!r}: this machine has {have}; use cpu or auto")
    if m.group(1) == "mps" and not (getattr(torch.backends, "mps", None) and torch.backends.mps.is_available()):
        raise RestoreError("device 'mps': not available on this machine; use cpu or auto")
    return torch.device(s)


def cpu_has_fast_bf16() -> bool:
    """True on x86 CPUs with AMX-BF16 or AVX512-BF16 (from /proc/cpuinfo; False elsewhere)."""
    from .threads import cpu_flags

    flags = cpu_flags()
    return "amx_bf16" in flags or "avx512_bf16" in flags


class PrecisionError(RestoreError, ValueError):
    """A precision the device or the architecture cannot run (a usage error, reported in one line)."""


def resolve_precision(
    precision: Precision,
    device: torch.device,
    supports_half: bool,
    supports_bf16: bool,
    *,
    cpu_bf16_ok: bool = False,
) -> torch.dtype:
    """Pick the compute dtype.

    ``auto``: on CUDA bf16 where the architecture and GPU support it, else fp16
    where safe, else fp32; on CPU bf16 only when the architecture's CPU bf16
    cost was measured and accepted (``cpu_bf16_ok``: the descriptor's
    ``cpu_bf16`` verdict, :class:`restore.models.archs.ArchInfo`) and the CPU
    has native bf16 (AMX / AVX512-BF16, :func:`cpu_has_fast_bf16`), else fp32.

    Args:
        precision: ``"auto"``, ``"fp32"``, ``"fp16"`` or ``"bf16"``.
        device: Where the model runs.
        supports_half, supports_bf16: The descriptor's fp16 / bf16 safety.
        cpu_bf16_ok: The architecture's measured CPU bf16 verdict (``RestorationModel.info.cpu_bf16_ok``).

    Returns:
        ``torch.float32``, ``torch.float16`` or ``torch.bfloat16``.

    Raises:
        PrecisionError: fp16/bf16 requested for an architecture that is not
            safe in it, or fp16 on CPU (a usage error: one line, no traceback).
    """
    if precision == "fp32":
        return torch.float32
    if precision == "auto":
        if device.type != "cuda":
            if cpu_bf16_ok and supports_bf16 and cpu_has_fast_bf16():
                return torch.bfloat16
            return torch.float32
        if supports_bf16 and torch.cuda.is_bf16_supported():
            return torch.bfloat16
        return torch.float16 if supports_half else torch.float32
    if precision == "bf16":
        if not supports_bf16:
            raise PrecisionError("precision bf16: this architecture is not safe in bfloat16; use precision fp32 or auto")
        return torch.bfloat16
    if precision == "fp16":
        if device.type != "cuda":
            raise PrecisionError(f"precision fp16 needs a CUDA device (this runs on {device.type}); use auto, fp32 or bf16")
        if not supports_half:
            raise PrecisionError("precision fp16: this architecture is not safe in float16; use precision fp32 or auto")
        return torch.float16
    raise PrecisionError(f"unknown precision {precision!r}; use auto, fp32, fp16 or bf16")


def _pad_to(x: torch.Tensor, h: int, w: int) -> torch.Tensor:
    """Reflect-pad (B, C, H, W) at bottom/right to (h, w); replicate where reflect cannot reach."""
    ph, pw = h - x.shape[-2], w - x.shape[-1]
    if ph <= 0 and pw <= 0:
        return x
    ph, pw = max(ph, 0), max(pw, 0)
    while ph > 0 or pw > 0:  # reflect can pad at most size-1 per pass
        sh = min(ph, x.shape[-2] - 1)
        sw = min(pw, x.shape[-1] - 1)
        if sh <= 0 and sw <= 0:
            return F.pad(x, (0, pw, 0, ph), mode="replicate")
        x = F.pad(x, (0, max(sw, 0), 0, max(sh, 0)), mode="reflect")
        ph, pw = ph - max(sh, 0), pw - max(sw, 0)
    return x


def _round_up(v: int, m: int) -> int:
    return -(-v // m) * m


def _is_oom(e: BaseException) -> bool:
    return isinstance(e, MemoryError) or (isinstance(e, RuntimeError) and "out of memory" in str(e).lower())


def run_tiled(
    forward: Callable[[torch.Tensor], torch.Tensor],
    image: np.ndarray,
    *,
    scale: int,
    out_channels: int | None = None,
    spec: TileSpec = TileSpec(),
    multiple_of: int = 1,
    min_size: int = 0,
    device: torch.device | str = "cpu",
    dtype: torch.dtype = torch.float32,
    progress: Callable[[int, int], None] | None = None,
    layout: str = "chw",
    out: np.ndarray | None = None,
    on_oom: Callable[[int, int], None] | None = None,
) -> np.ndarray:
    """Run ``forward`` over ``image`` tile by tile and blend the tiles seamlessly.

    Memory: the host holds the input, the output and one tile's temporaries,
    nothing that grows with the image: tiles accumulate their weighted
    outputs straight into ``out``; the blend weights are separable and every
    tile row uses the same column tiles, so the weight sum at (r, c) is
    ``WY[r] * WX[c]`` (two 1-D arrays), and each row of tiles completes every
    output row above the next row's start, which is then normalised in place.
    Tiles are cut from the unpadded
    input (reflect-padded one by one at the bottom/right border), and only
    tiles go to the device.  On out-of-memory (CUDA OOM, ``MemoryError``) the
    tile edge is halved and the image restarted, down to the model minimum.

    Args:
        forward: Maps a float tensor ``(B, C_in, h, w)`` on ``device`` to
            ``(B, C_out, h*scale, w*scale)``.  Called under
            ``torch.inference_mode`` (and autocast for fp16/bf16).
        image: float32 host array, ``(C_in, H, W)`` (``layout="chw"``) or
            ``(H, W, C_in)`` (``layout="hwc"``), any value range.
        scale: Output/input size ratio (1 for restoration models).
        out_channels: ``C_out`` (default: ``C_in``).
        spec: :class:`TileSpec`.  ``tile=0`` or ``tile >= max(H, W)`` runs the
            whole (padded) image as one tile.
        multiple_of: Model input sides must be multiples of this.
        min_size: Model input sides must be at least this.
        device: Where tiles run; only tiles are moved there.
        dtype: Compute dtype (see :func:`resolve_precision`).
        progress: Called as ``progress(done_tiles, total_tiles)``.
        layout: ``"chw"`` or ``"hwc"``, for both input and output.
        out: Optional preallocated float32 output of the right shape and
            layout (e.g. a ``numpy.memmap`` for outputs larger than memory).
        on_oom: Called as ``on_oom(old_tile, new_tile)`` when the tile is halved.

    Returns:
        float32 ``(C_out, H*scale, W*scale)`` (or ``(H*scale, W*scale, C_out)``).

    Raises:
        ValueError: bad shapes or tile/overlap values.
        MemoryError / RuntimeError: out of memory even at the smallest tile.
    """
    spec_now = spec
    while True:
        try:
            return _run_tiled_once(forward, image, scale=scale, out_channels=out_channels, spec=spec_now,
                                   multiple_of=multiple_of, min_size=min_size, device=device, dtype=dtype,
                                   progress=progress, layout=layout, out=out)
        except BaseException as e:  # noqa: BLE001 - re-raised unless it is an out-of-memory we can adapt to
            if not _is_oom(e):
                raise
            h, w = (image.shape[1:] if layout == "chw" else image.shape[:2])
            cur = spec_now.tile if isinstance(spec_now.tile, int) else max(spec_now.tile)
            cur = cur if cur > 0 else max(h, w)
            m = max(1, int(multiple_of))
            new = max(m, (cur // 2) // m * m, _round_up(max(min_size, 1), m))
            if new >= cur or not isinstance(spec_now.tile, int):
                raise
            from .models.fused_attention import clear_mask_cache

            clear_mask_cache()  # masks cached for the failed tile size
            if device != "cpu" and torch.cuda.is_available():
                torch.cuda.empty_cache()
            if on_oom:
                on_oom(cur, new)
            spec_now = TileSpec(tile=new, overlap=min(spec_now.overlap, new // 2 - 1), batch=1, context=spec_now.context,
                                align=spec_now.align, uniform=spec_now.uniform)


def _run_tiled_once(forward, image, *, scale, out_channels, spec, multiple_of, min_size, device, dtype, progress, layout, out):
    if image.ndim != 3:
        raise ValueError(f"image must be 3-D ({layout}), got shape {image.shape}")
    if layout not in ("chw", "hwc"):
        raise ValueError(f"layout must be 'chw' or 'hwc', got {layout!r}")
    device = torch.device(device)
    if layout == "chw":
        c_in, h, w = image.shape
    else:
        h, w, c_in = image.shape
    c_out = out_channels or c_in
    m = max(1, int(multiple_of))
    # the padded canvas: what whole-image inference would see
    ph = max(_round_up(h, m), _round_up(max(min_size, 1), m))
    pw = max(_round_up(w, m), _round_up(max(min_size, 1), m))
    tile_h, tile_w = (spec.tile, spec.tile) if isinstance(spec.tile, int) else (int(spec.tile[0]), int(spec.tile[1]))
    min_m = _round_up(max(min_size, 1), m)
    if tile_h <= 0 or tile_w <= 0 or (tile_h >= ph and tile_w >= pw):
        th, tw = ph, pw
    else:
        th = min(max(m, (tile_h // m) * m, min_m), ph)
        tw = min(max(m, (tile_w // m) * m, min_m), pw)
    if not isinstance(spec.tile, int) and (ph < tile_h or pw < tile_w):
        # a fixed-size model: the canvas must hold at least one whole tile
        ph, pw = max(ph, tile_h), max(pw, tile_w)
        th, tw = tile_h, tile_w
    if isinstance(spec.tile, int):  # same tile count, smallest tiles: no pixel computed needlessly
        a = math.lcm(m, max(1, int(spec.align)))
        th = balanced_tile(ph, th, spec.overlap, a, min_m)
        tw = balanced_tile(pw, tw, spec.overlap, a, min_m)
    overlap_y = min(spec.overlap, th - 1) if th < ph else 0
    overlap_x = min(spec.overlap, tw - 1) if tw < pw else 0
    ys = plan_axis(ph, th, overlap_y)
    xs = plan_axis(pw, tw, overlap_x)
    wy = _axis_weights(ys, th, scale)
    wx = _axis_weights(xs, tw, scale)

    src = torch.from_numpy(np.ascontiguousarray(image, dtype=np.float32))
    if layout == "hwc":
        src = src.permute(2, 0, 1)  # a view: no copy of the image

    cy = int(spec.context) if len(ys) > 1 else 0
    cx = int(spec.context) if len(xs) > 1 else 0

    # spec.uniform: every tile's input window has one shape, the tile plus its context on both sides, shifted
    # inside the canvas at the border instead of clipped there (the canvas edge is where the whole-image run has
    # it too).  One shape is one compiled graph, one ONNX export and session: clipped windows gave the RAW
    # denoiser's 1024-px tiles four shapes, four sessions and 3.5 GB instead of 1.8 on a 50 MP mosaic.
    win_h, win_w = min(th + 2 * cy, ph), min(tw + 2 * cx, pw)

    def cut(y0: int, x0: int) -> tuple[torch.Tensor, int, int]:
        """Model input for the tile at (y0, x0): the tile plus context, clipped to the canvas (or, with
        ``spec.uniform``, a window of the one shape shifted inside it), reflect-padded past the image and up to
        the size requirements; and the tile's offset in it."""
        if spec.uniform:
            ry0, rx0 = max(0, min(y0 - cy, ph - win_h)), max(0, min(x0 - cx, pw - win_w))
            ry1, rx1 = ry0 + win_h, rx0 + win_w
        else:
            ry0, rx0 = max(0, y0 - cy), max(0, x0 - cx)
            ry1, rx1 = min(ph, y0 + th + cy), min(pw, x0 + tw + cx)
        need_h = max(_round_up(ry1 - ry0, m), min_m)
        need_w = max(_round_up(rx1 - rx0, m), min_m)
        t = src[:, ry0 : min(ry1, h), rx0 : min(rx1, w)]
        if t.shape[1] < need_h or t.shape[2] < need_w:  # border tile: reflect-pad like the whole canvas
            t = _pad_to(t[None], need_h, need_w)[0]
        return t, y0 - ry0, x0 - rx0

    oh, ow = h * scale, w * scale
    if out is None:
        out = np.empty((c_out, oh, ow) if layout == "chw" else (oh, ow, c_out), dtype=np.float32)
    chw = layout == "chw"
    # The blend weights are separable and every tile row uses the same column tiles, so the sum of
    # weights at output pixel (r, c) is WY[r] * WX[c]: tiles accumulate straight into ``out`` and
    # finished rows are normalised in place - no accumulator band, no 2-D weight sum.
    wy_sum = np.zeros(ph * scale, np.float32)
    for iy, y0 in enumerate(ys):
        wy_sum[y0 * scale : y0 * scale + th * scale] += wy[iy]
    wx_sum = np.zeros(pw * scale, np.float32)
    for ix, x0 in enumerate(xs):
        wx_sum[x0 * scale : x0 * scale + tw * scale] += wx[ix]
    inv_wx = (1.0 / wx_sum[:ow]).astype(np.float32)
    total = len(ys) * len(xs)
    if progress:
        progress(0, total)  # the tile count is known before the first tile runs: bars show it from the start
    autocast = dtype in (torch.float16, torch.bfloat16)
    batch = max(1, int(spec.batch))
    done = 0
    zeroed = 0  # output rows [0, zeroed) are initialised
    with torch.inference_mode():
        for iy, y0 in enumerate(ys):
            lo = y0 * scale  # absolute output row of the tile row's top; every row above is final
            rows_n = max(0, min(th * scale, oh - lo))  # rows of this tile row inside the image
            if lo + rows_n > zeroed:
                z0 = max(zeroed, lo)
                if chw:
                    out[:, z0 : lo + rows_n] = 0
                else:
                    out[z0 : lo + rows_n] = 0
                zeroed = lo + rows_n
            for b0 in range(0, len(xs), batch):
                ixs = list(range(b0, min(b0 + batch, len(xs))))
                cuts = [cut(y0, xs[ix]) for ix in ixs]
                # clipped windows differ in size at the border: run equal shapes together
                shapes: dict[tuple, list[int]] = {}
                for k, (t, _, _) in enumerate(cuts):
                    shapes.setdefault(tuple(t.shape), []).append(k)
                for shape, ks in shapes.items():
                    x = torch.stack([cuts[k][0] for k in ks]).to(device, non_blocking=True)
                    if autocast:
                        with torch.autocast(device_type=device.type, dtype=dtype):
                            y = forward(x)
                    else:
                        y = forward(x)
                    y = y.float().cpu().numpy()
                    if y.shape[1:] != (c_out, shape[1] * scale, shape[2] * scale):
                        raise ValueError(f"model returned {tuple(y.shape[1:])}, expected {(c_out, shape[1] * scale, shape[2] * scale)}")
                    for j, k in enumerate(ks):
                        ix = ixs[k]
                        ox = xs[ix] * scale
                        cols_n = min(tw * scale, ow - ox)  # canvas padding past the image is dropped
                        if rows_n <= 0 or cols_n <= 0:
                            continue
                        dy, dx = cuts[k][1] * scale, cuts[k][2] * scale
                        core = y[j, :, dy : dy + rows_n, dx : dx + cols_n]
                        contrib = core * np.outer(wy[iy][:rows_n], wx[ix][:cols_n])
                        if chw:
                            out[:, lo : lo + rows_n, ox : ox + cols_n] += contrib
                        else:
                            out[lo : lo + rows_n, ox : ox + cols_n] += contrib.transpose(1, 2, 0)
                done += len(ixs)
                if progress:
                    progress(done, total)
            # rows [lo, next) receive nothing from later tile rows: normalise them in place
            nxt = ys[iy + 1] * scale if iy + 1 < len(ys) else ph * scale
            r1 = min(nxt, oh)
            if r1 > lo:
                inv_wy = (1.0 / wy_sum[lo:r1]).astype(np.float32)
                if chw:
                    out[:, lo:r1] *= inv_wy[None, :, None]
                    out[:, lo:r1] *= inv_wx[None, None, :]
                else:
                    out[lo:r1] *= inv_wy[:, None, None]
                    out[lo:r1] *= inv_wx[None, :, None]
    return out
