"""Do-no-harm guard for restoration models (issue 20): keep the model's change only where it removes a degradation.

A one-frame restoration network proposes a residual ``r = model(x) - x``: its estimate of the degradation (the rain
layer, the veil, the reflection).  On a photo, or a part of one, without that degradation a small model's residual
is an error: it smooths texture or shifts brightness.  The guard is a second, much smaller network, trained for one
set of weights with the weights frozen, that looks at the input and the proposed residual and gives each pixel a
weight ``w`` in [0, 1]:

    output = x + w * (model(x) - x)

so the guard can only move the output back towards the input (``w = 0``: the pixel is left unchanged).  It is
trained (``data_tools/train_guard.py``) on clean, lightly and heavily degraded training patches to minimise the
distance of the guarded output to the clean image, which is smallest where ``w`` keeps the residuals that point
towards the clean image and drops the rest.  A guard cannot add what the model missed; it decides how much of the
model's proposal to trust, pixel by pixel, and (``frame_weight``, the weather starter's guard) for the whole frame.

:class:`GuardNet` is a fully convolutional network with a receptive field of :data:`HALO` pixels at most on each
side, so :func:`guard_weights` and :func:`apply_guard` run it in square tiles of bounded memory (:data:`TILE` px
plus the halo, whatever the image's width) whose result is identical to one pass over the whole image.  A catalogue entry names its guard's file in ``weights/MANIFEST``:
``guard: {file: derain-starter-guard.safetensors, sha256: ..., recipe: ..., min_share: 0.005}``; models without one
are never guarded.

**Gate.**  Where the guard keeps only a trace of the change over the whole frame (mean weight under ``min_share``),
the kept pixels are scattered false alarms or a degradation too faint to matter, and :func:`apply_guard` returns
the input unchanged.  ``min_share`` is one number per guard, stored with its catalogue entry and chosen on
degraded crops of training images, never the evaluation set (``data_tools/calibrate_guard.py``: of the candidate gates
giving up at most 0.05 dB on average on the crops they gate, the smallest that leaves the fewest losing crops).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

__all__ = ["GuardNet", "HALO", "TILE", "guard_weights", "apply_guard", "guard_for", "load_guard", "save_guard"]

#: Pixels of context each side of a tile: at least the receptive field of :class:`GuardNet` (37 px each side
#: with its dilations 1, 2, 4, 8 at half resolution), rounded up to an even number so tiles start at even offsets.
HALO = 48


class GuardNet(nn.Module):
    """Per-pixel weight of a restoration model's residual (see the module docstring).

    Layers: a 3x3 convolution at full resolution on ``[x - 0.5, 4 (y - x)]``; a stride-2 3x3 convolution; four
    residual 3x3 convolutions with dilations 1, 2, 4, 8 at half resolution (the context that tells a rain streak or
    a reflection from texture); bilinear upsampling x2, a 3x3 convolution over both resolutions' features and a
    1x1 convolution to one channel through a sigmoid.  ``feats=16``: 49 k parameters, about 18 k multiply-adds per
    pixel.

    With ``global_context`` the half-resolution features are also averaged over the whole image and, through a
    linear layer, shift the last convolution's input: a degradation spread over the frame (rain, haze) and a few
    rain-like lines of a clean photo then look different.  :func:`guard_weights` computes that average in a first
    pass over tiles, so tiles still give the one-pass result.

    With ``frame_weight`` (which implies ``global_context``) a linear layer on that average also gives one weight
    ``s`` in (0, 1) for the whole image, and the per-pixel weights become ``s + (1 - s) w``: a change spread over
    the frame (a veil of fine rain, a haze) can be kept as one decision instead of pixel by pixel, which a
    per-pixel weight trained to distrust texture-like changes rarely learns.  ``s`` starts near 0.

    Args:
        feats: Channels at full resolution (twice as many at half resolution).
        global_context: Add the whole-image average of the half-resolution features.
        frame_weight: Add the whole-image weight ``s`` (implies ``global_context``).
    """

    #: Gate (module docstring): below this mean weight over the image, :func:`apply_guard` keeps nothing.
    min_share: float = 0.0

    def __init__(self, feats: int = 16, global_context: bool = False, frame_weight: bool = False):
        super().__init__()
        f = int(feats)
        self.frame_weight = bool(frame_weight)
        self.global_context = bool(global_context) or self.frame_weight
        self.head = nn.Conv2d(6, f, 3, padding=1)
        self.down = nn.Conv2d(f, 2 * f, 3, stride=2, padding=1)
        self.body = nn.ModuleList(nn.Conv2d(2 * f, 2 * f, 3, padding=d, dilation=d) for d in (1, 2, 4, 8))
        self.fuse = nn.Conv2d(3 * f, f, 3, padding=1)
        self.out = nn.Conv2d(f, 1, 1)
        if self.global_context:
            self.ctx = nn.Linear(2 * f, f)
        if self.frame_weight:
            self.frame = nn.Linear(2 * f, 1)
            with torch.no_grad():  # s = sigmoid(-5) ~ 0.007 at the start: the image is trusted only when learnt
                self.frame.weight.mul_(0.1)
                self.frame.bias.fill_(-5.0)

    def features(self, x: torch.Tensor, y: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Full- and half-resolution features ``(N, f, H, W)``, ``(N, 2f, H/2, W/2)`` of ``x`` and ``y - x``."""
        act = F.leaky_relu
        h = act(self.head(torch.cat([x - 0.5, 4.0 * (y - x)], 1)), 0.1)
        d = act(self.down(h), 0.1)
        for conv in self.body:
            d = d + act(conv(d), 0.1)
        return h, d

    def weights(self, h: torch.Tensor, d: torch.Tensor, z: torch.Tensor | None = None) -> torch.Tensor:
        """Weights ``(N, 1, H, W)`` from :meth:`features`; ``z`` ``(N, 2f)``: the whole-image mean of ``d``
        (``global_context`` only; default: the mean of this ``d``)."""
        u = F.interpolate(d, scale_factor=2.0, mode="bilinear", align_corners=False)
        t = self.fuse(torch.cat([h, u], 1))
        if self.global_context:
            z = d.mean(dim=(2, 3)) if z is None else z
            t = t + self.ctx(z)[:, :, None, None]
        w = torch.sigmoid(self.out(F.leaky_relu(t, 0.1)))
        if self.frame_weight:
            s = torch.sigmoid(self.frame(z))[:, :, None, None]
            w = s + (1.0 - s) * w
        return w

    def forward(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        """Weights ``w`` for the residual ``y - x`` (the whole-image context is this input's).

        Args:
            x: Model input, float32 ``(N, 3, H, W)`` in [0, 1] (the model's working encoding); ``H`` and ``W`` even.
            y: Model output, same shape and encoding.

        Returns:
            float32 ``(N, 1, H, W)`` in (0, 1).
        """
        return self.weights(*self.features(x, y))


#: Side of the square tiles :func:`guard_weights` and :func:`apply_guard` run the network on (plus :data:`HALO`
#: each side): about 0.4 GB of float32 features at most, whatever the image size, for 1.4x the pixels of one pass.
TILE = 512


def _check(x: np.ndarray, y: np.ndarray) -> None:
    if x.shape != y.shape or x.ndim != 3 or x.shape[2] != 3:
        raise ValueError(f"guard: needs input and output of one (H, W, 3) shape, got {x.shape} and {y.shape}")


def _tiles(net: GuardNet, x: np.ndarray, y: np.ndarray, tile: int):
    """Yield ``(top, left, w)``: the weights ``(n, m)`` of each ``tile``-px block of the image, exactly as one pass
    over the whole image (even-padded at the bottom/right edge) would give them (module docstring)."""
    h, w = x.shape[:2]
    hh, ww = h + h % 2, w + w % 2  # even size: stride 2 then x2 upsampling maps pixels back to themselves
    step = max(2, tile + tile % 2)

    def region(a: np.ndarray, r0: int, r1: int, c0: int, c1: int) -> torch.Tensor:
        """Rows r0:r1, columns c0:c1 of ``a`` edge-padded to (hh, ww): a copy of this region only."""
        block = a[r0:min(r1, h), c0:min(c1, w)]
        if r1 > h or c1 > w:
            block = np.pad(block, ((0, r1 - min(r1, h)), (0, c1 - min(c1, w)), (0, 0)), mode="edge")
        return torch.from_numpy(np.ascontiguousarray(block, dtype=np.float32)).permute(2, 0, 1)[None]

    def blocks():
        for top in range(0, hh, step):
            for left in range(0, ww, step):
                r0, r1 = max(0, top - HALO), min(hh, top + step + HALO)
                c0, c1 = max(0, left - HALO), min(ww, left + step + HALO)
                n, m = min(step, hh - top), min(step, ww - left)  # this block's own rows/columns (even offsets)
                feats = net.features(region(x, r0, r1, c0, c1), region(y, r0, r1, c0, c1))
                yield top, left, n, m, top - r0, left - c0, feats

    with torch.inference_mode():
        z = None
        if net.global_context:  # first pass: the whole-image mean of the half-resolution features
            total = 0.0
            for _, _, n, m, dr, dc, (_, d) in blocks():
                total = total + d[:, :, dr // 2:(dr + n + 1) // 2, dc // 2:(dc + m + 1) // 2].sum(dim=(2, 3))
            z = total / ((hh // 2) * (ww // 2))
        for top, left, n, m, dr, dc, (hf, d) in blocks():
            wt = net.weights(hf, d, z)[0, 0, dr:dr + n, dc:dc + m].numpy()
            yield top, left, wt[: h - top, : w - left]


def guard_weights(net: GuardNet, x: np.ndarray, y: np.ndarray, tile: int = TILE) -> np.ndarray:
    """Per-pixel weights of ``y - x`` over a whole image, computed in tiles of ``tile`` px (bounded memory).

    Each tile is run with :data:`HALO` pixels of context on every side (image edges padded as in one pass over the
    image), so the result does not depend on ``tile``.

    Args:
        net: The guard network (eval mode, float32, CPU).
        x: Model input, float32 ``(H, W, 3)`` in [0, 1].
        y: Model output, float32 ``(H, W, 3)``.
        tile: Tile side in pixels (rounded up to even); memory about ``(tile + 2 HALO)**2 * 1.2`` kB.

    Returns:
        float32 ``(H, W, 1)`` in [0, 1].

    Raises:
        ValueError: ``x`` and ``y`` differ in shape or are not 3-channel ``(H, W, 3)``.
    """
    _check(x, y)
    out = np.empty(x.shape[:2] + (1,), np.float32)
    for top, left, wt in _tiles(net, x, y, tile):
        out[top:top + wt.shape[0], left:left + wt.shape[1], 0] = wt
    return out


def apply_guard(net: GuardNet, x: np.ndarray, y: np.ndarray, out: np.ndarray | None = None,
                tile: int = TILE, min_share: float | None = None) -> tuple[np.ndarray, float]:
    """The guarded output ``x + w * (y - x)`` (what the ``model`` step returns) and the mean weight; the input
    itself where the mean weight is under the gate ``min_share`` (module docstring).

    Mixed tile by tile, so beyond ``out`` the memory is one tile's, whatever the image size.

    Args:
        net, x, y, tile: As :func:`guard_weights`.
        out: Where to write the result, float32 ``(H, W, 3)``, sharing no memory with ``x`` or ``y`` (later
            tiles read their neighbours' pixels through the halo).  Default: a new array.
        min_share: The gate, in [0, 1]; default ``net.min_share`` (0 for a guard read by :func:`load_guard`, the
            catalogue's value for one from :func:`guard_for`); 0 turns the gate off.

    Returns:
        ``(out, mean_w)``: ``out`` float32 ``(H, W, 3)``; ``mean_w`` in [0, 1], the guard's mean weight over the
        image (the share of the model's change kept unless it is under the gate, when ``out`` equals ``x``).

    Raises:
        ValueError: as :func:`guard_weights`, or ``out`` of another shape or dtype, or sharing memory with ``x``
            or ``y``.
    """
    _check(x, y)
    if out is None:
        out = np.empty(x.shape, np.float32)
    elif out.shape != x.shape or out.dtype != np.float32:
        raise ValueError(f"guard: out must be float32 {x.shape}, got {out.dtype} {out.shape}")
    elif np.shares_memory(out, x) or np.shares_memory(out, y):
        raise ValueError("guard: out must not share memory with the input or the model output")
    total = 0.0
    for top, left, wt in _tiles(net, x, y, tile):
        rows, cols = slice(top, top + wt.shape[0]), slice(left, left + wt.shape[1])
        xb = x[rows, cols]
        blk = np.subtract(y[rows, cols], xb, dtype=np.float32)
        blk *= wt[..., None]
        blk += xb
        out[rows, cols] = blk
        total += float(wt.sum(dtype=np.float64))
    mean_w = total / max(1, x.shape[0] * x.shape[1])
    if mean_w < (net.min_share if min_share is None else float(min_share)):
        np.copyto(out, x, casting="same_kind")
    return out, mean_w


def save_guard(net: GuardNet, path: str | Path, meta: dict[str, str] | None = None) -> None:
    """Write ``net`` as a ``.safetensors`` file (float32; its form in the ``restore.guard.*`` metadata)."""
    from safetensors.torch import save_file

    sd = {k: v.detach().float().contiguous().clone() for k, v in net.state_dict().items()}
    save_file(sd, str(path), metadata={"restore.guard.feats": str(net.head.out_channels),
                                       "restore.guard.global": str(int(net.global_context)),
                                       "restore.guard.frame": str(int(net.frame_weight)), **(meta or {})})


def load_guard(path: str | Path) -> GuardNet:
    """Read a guard written by :func:`save_guard`.

    Raises:
        ValueError: not a readable ``.safetensors`` file of a :class:`GuardNet`.
    """
    from safetensors import safe_open
    from safetensors.torch import load_file

    try:
        with safe_open(str(path), "pt") as f:
            meta = f.metadata() or {}
        net = GuardNet(int(meta.get("restore.guard.feats", "16")), meta.get("restore.guard.global") == "1",
                       meta.get("restore.guard.frame") == "1")
        net.load_state_dict(load_file(str(path)), strict=True)
    except Exception as e:  # safetensors' own errors, a missing file, keys or shapes of another network
        raise ValueError(f"{path}: not a guard network ({str(e).splitlines()[0] if str(e) else type(e).__name__})") from None
    return net.eval()


def guard_for(name: str, exposed: bool = False) -> GuardNet | None:
    """The guard of a catalogue model (its MANIFEST ``guard: {file, sha256, recipe, min_share, exposed}``), or None
    (no entry, or a path).

    The file is looked up beside the model's weights and its sha256 checked, as the model's own file is
    (:func:`restore.models.catalog.verified_file`).  ``min_share`` (optional, default 0: no gate) becomes the
    network's :attr:`GuardNet.min_share`.  ``exposed`` (optional) is a second guard of the same form for HDR input
    the model step shows the network as an exposure (``hdr: exposure``), trained to hold across exposures
    (``data_tools/train_guard.py --exposure``).

    Args:
        name: Catalogue name.
        exposed: The guard for exposed HDR input: None where the entry has none (the model step then uses the
            main guard).

    Raises:
        ValueError: the entry's ``guard`` is malformed, or the file is not a guard network.
        ModelError: the guard's file is missing or its checksum differs.
    """
    from .models.catalog import find

    entry = find(name)
    if entry is None or "guard" not in entry.extra:
        return None
    spec = entry.extra["guard"]
    if not isinstance(spec, dict):
        raise ValueError(f"guard must be a mapping {{file: ..., sha256: ..., recipe: ..., min_share: ...}}, not {spec!r}")
    if exposed:
        if "exposed" not in spec:
            return None
        return _load_spec(spec["exposed"], f"the exposed-HDR guard of {name!r}", nested=False)
    return _load_spec(spec, f"the guard of {name!r}", nested=True)


def _load_spec(spec, what: str, nested: bool) -> GuardNet:
    """A guard from its MANIFEST mapping ``{file, sha256, recipe, min_share}`` (``exposed`` too where ``nested``)."""
    from .models.catalog import verified_file

    keys = {"file", "sha256", "recipe", "min_share"} | ({"exposed"} if nested else set())
    if not isinstance(spec, dict) or not {"file", "sha256"} <= set(spec) <= keys:
        raise ValueError(f"{what} must be a mapping {{file: ..., sha256: ..., recipe: ..., min_share: ...}}, not {spec!r}")
    gate = spec.get("min_share", 0.0)
    if isinstance(gate, bool) or not isinstance(gate, (int, float)) or not 0.0 <= gate < 1.0:
        raise ValueError(f"guard min_share must be a number in [0, 1), not {gate!r}")
    path = verified_file(str(spec["file"]), str(spec["sha256"]), what, str(spec.get("recipe", "")))
    net = load_guard(path)
    net.min_share = float(gate)
    return net
