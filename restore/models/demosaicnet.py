"""Learned demosaicking: the Bayer and X-Trans networks of Gharbi et al. 2016.

"Deep Joint Demosaicking and Denoising" (Gharbi, Chaurasia, Paris, Durand,
SIGGRAPH Asia 2016).  The architectures are written here from the paper and
the released weights' layout; the weights are the MIT-licensed ``bayer.pth``
and ``xtrans.pth`` shipped in the PyPI package ``demosaicnet`` (0.0.14),
read with ``torch.load(weights_only=True)`` from the installed distribution
without importing it (its ``__init__`` needs ``pkg_resources``).

Bayer network (released variant): the mosaic, as 3 channels that are zero
where a colour is not sampled, is packed 2x2 -> 4 channels by a stride-2
2x2 convolution; 15 unpadded 3x3 conv+ReLU layers of width 64 (the last
128 wide, split into filters x masks and multiplied); a 1x1 convolution
predicts 12 half-resolution channels, a grouped 2x2 stride-2 transposed
convolution brings them to 3 full-resolution channels; those and the
(cropped) mosaic go through a 3x3 conv+ReLU (64) and a 1x1 conv to RGB.
It is trained on the ``G R / B G`` phase; other Bayer phases are shifted
onto it by reflect padding (which keeps the 2x2 lattice).

X-Trans network: no packing; 11 unpadded 3x3 conv+ReLU layers (64), the
cropped mosaic concatenated, a 3x3 conv+ReLU and a 1x1 conv to RGB.

Both lose a fixed border (31 px Bayer, 12 px X-Trans): the input is reflect
padded so the output has the input's size, and large inputs run in tiles
whose context covers that border exactly (tiled = whole image).

The networks were trained on white-balanced, display-encoded (gamma) RGB
in [0, 1]: give them white-balanced CFA data in that encoding, or set
``linear=True`` to have linear data sRGB-encoded before and decoded after.
"""

from __future__ import annotations

from collections import OrderedDict
from functools import lru_cache
from pathlib import Path

import numpy as np

from ..errors import ModelError

__all__ = ["BayerNet", "XTransNet", "weights_path", "load_network", "cfa_pattern", "demosaic_bayer", "demosaic_xtrans",
           "default_device"]

BAYER_MARGIN = 31
XTRANS_MARGIN = 12


def _torch():
    import torch

    return torch


def _nets():
    torch = _torch()
    nn = torch.nn

    class BayerNet(nn.Module):
        """Bayer demosaicker: ``(B, 3, H, W)`` masked mosaic (G R / B G phase, H, W even) -> ``(B, 3, H-62, W-62)``."""

        def __init__(self, depth: int = 15, width: int = 64):
            super().__init__()
            self.width = width
            layers: OrderedDict = OrderedDict(pack_mosaic=nn.Conv2d(3, 4, 2, stride=2))
            for i in range(depth):
                cin = 4 if i == 0 else width
                cout = 2 * width if i == depth - 1 else width
                layers[f"conv{i + 1}"] = nn.Conv2d(cin, cout, 3)
                layers[f"relu{i + 1}"] = nn.ReLU(inplace=True)
            self.main_processor = nn.Sequential(layers)
            self.residual_predictor = nn.Conv2d(width, 12, 1)
            self.upsampler = nn.ConvTranspose2d(12, 3, 2, stride=2, groups=3)
            self.fullres_processor = nn.Sequential(OrderedDict(
                post_conv=nn.Conv2d(6, width, 3), post_relu=nn.ReLU(inplace=True), output=nn.Conv2d(width, 3, 1)))

        def forward(self, mosaic):
            f = self.main_processor(mosaic)
            f = f[:, : self.width] * f[:, self.width :]
            up = self.upsampler(self.residual_predictor(f))
            c = (mosaic.shape[-1] - up.shape[-1]) // 2, (mosaic.shape[-2] - up.shape[-2]) // 2
            crop = mosaic[..., c[1] : c[1] + up.shape[-2], c[0] : c[0] + up.shape[-1]]
            return self.fullres_processor(torch.cat([crop, up], 1))

    class XTransNet(nn.Module):
        """X-Trans demosaicker: ``(B, 3, H, W)`` masked mosaic -> ``(B, 3, H-24, W-24)``."""

        def __init__(self, depth: int = 11, width: int = 64):
            super().__init__()
            layers: OrderedDict = OrderedDict()
            for i in range(depth):
                layers[f"conv{i + 1}"] = nn.Conv2d(3 if i == 0 else width, width, 3)
                layers[f"relu{i + 1}"] = nn.ReLU(inplace=True)
            self.main_processor = nn.Sequential(layers)
            self.fullres_processor = nn.Sequential(OrderedDict(
                post_conv=nn.Conv2d(3 + width, width, 3), post_relu=nn.ReLU(inplace=True), output=nn.Conv2d(width, 3, 1)))

        def forward(self, mosaic):
            f = self.main_processor(mosaic)
            c = (mosaic.shape[-1] - f.shape[-1]) // 2, (mosaic.shape[-2] - f.shape[-2]) // 2
            crop = mosaic[..., c[1] : c[1] + f.shape[-2], c[0] : c[0] + f.shape[-1]]
            return self.fullres_processor(torch.cat([crop, f], 1))

    return BayerNet, XTransNet


def __getattr__(name: str):  # BayerNet / XTransNet without importing torch at module import
    if name in ("BayerNet", "XTransNet"):
        b, x = _nets()
        return b if name == "BayerNet" else x
    raise AttributeError(name)


def weights_path(kind: str) -> Path:
    """``bayer.pth`` / ``xtrans.pth`` inside the installed ``demosaicnet`` distribution.

    Raises:
        ModelError: ``demosaicnet`` is not installed (``pip install demosaicnet``) or lacks the file.
    """
    from importlib.metadata import PackageNotFoundError, distribution

    if kind not in ("bayer", "xtrans"):
        raise ValueError(f"kind must be 'bayer' or 'xtrans', not {kind!r}")
    try:
        p = Path(str(distribution("demosaicnet").locate_file(f"demosaicnet/data/{kind}.pth")))
    except PackageNotFoundError:
        raise ModelError("learned demosaicking needs the MIT-licensed weights of PyPI demosaicnet: pip install demosaicnet") from None
    if not p.is_file():
        raise ModelError(f"{p}: demosaicnet is installed but its {kind}.pth is missing")
    return p


@lru_cache(maxsize=2)
def load_network(kind: str):
    """The ``"bayer"`` or ``"xtrans"`` network with its released weights (float32, CPU, eval mode, cached).

    Raises:
        ModelError: weights missing, or they do not fit the architecture (strict load).
    """
    torch = _torch()
    path = weights_path(kind)
    try:
        sd = torch.load(str(path), map_location="cpu", weights_only=True)
    except Exception as e:
        raise ModelError(f"{path}: cannot load: {str(e).splitlines()[0]}") from None
    b, x = _nets()
    net = b() if kind == "bayer" else x()
    try:
        net.load_state_dict(sd, strict=True)
    except RuntimeError as e:
        raise ModelError(f"{path}: weights do not fit the {kind} network: {str(e).splitlines()[0]}") from None
    return net.eval()


_LETTERS = {"R": 0, "G": 1, "B": 2}


def cfa_pattern(pattern, period: int) -> np.ndarray:
    """Normalise a CFA description to a ``(period, period)`` int array of 0=R, 1=G, 2=B.

    Args:
        pattern: A string of ``period**2`` letters R/G/B in row order
            (``"RGGB"``), or an int array of that shape as LibRaw/rawpy's
            ``raw_pattern`` indexes ``color_desc`` ``"RGBG"`` (3 = second green).

    Raises:
        ValueError: wrong size or letters.
    """
    if isinstance(pattern, str):
        s = pattern.upper().replace(" ", "").replace("/", "")
        if len(s) != period * period or set(s) - set(_LETTERS):
            raise ValueError(f"CFA pattern {pattern!r}: need {period * period} letters of R, G, B")
        return np.array([_LETTERS[c] for c in s], np.int64).reshape(period, period)
    a = np.asarray(pattern).astype(np.int64)
    if a.shape != (period, period) or a.min() < 0 or a.max() > 3:
        raise ValueError(f"CFA pattern must be {period}x{period} colour indices 0..3, got shape {a.shape}")
    return np.where(a == 3, 1, a)


def _masked(cfa: np.ndarray, pat: np.ndarray) -> np.ndarray:
    """(H, W) CFA -> (3, H, W) with each sample in its colour's channel, zeros elsewhere."""
    h, w = cfa.shape
    p = pat.shape[0]
    idx = np.tile(pat, (-(-h // p), -(-w // p)))[:h, :w]
    out = np.zeros((3, h, w), np.float32)
    for c in range(3):
        out[c][idx == c] = cfa[idx == c]
    return out


def default_device() -> str:
    """``"cuda"`` when a CUDA device is available, else ``"cpu"`` (where the network runs unless told)."""
    return "cuda" if _torch().cuda.is_available() else "cpu"


def _run_tiled(net, x: np.ndarray, margin: int, tile: int, align: int, device: str | None) -> np.ndarray:
    """Run an unpadded network over ``x`` (3, H, W) whose output is ``x`` shrunk by ``margin`` per side, in tiles."""
    torch = _torch()
    _, H, W = x.shape
    oh, ow = H - 2 * margin, W - 2 * margin
    tile = max(align, tile // align * align)
    out = np.empty((3, oh, ow), np.float32)
    device = device or default_device()
    net = net.to(device)
    with torch.inference_mode():
        for y0 in range(0, oh, tile):
            for x0 in range(0, ow, tile):
                y1, x1 = min(oh, y0 + tile), min(ow, x0 + tile)
                ey, ex = -(y1 - y0) % align, -(x1 - x0) % align  # keep tile sides multiples of align
                sub = x[:, y0 : y1 + ey + 2 * margin, x0 : x1 + ex + 2 * margin]
                if sub.shape[1] < y1 - y0 + ey + 2 * margin or sub.shape[2] < x1 - x0 + ex + 2 * margin:
                    sub = np.pad(sub, ((0, 0), (0, y1 - y0 + ey + 2 * margin - sub.shape[1]), (0, x1 - x0 + ex + 2 * margin - sub.shape[2])))
                y = net(torch.from_numpy(np.ascontiguousarray(sub))[None].to(device))[0].float().cpu().numpy()
                out[:, y0:y1, x0:x1] = y[:, : y1 - y0, : x1 - x0]
    return out


def _encode(cfa: np.ndarray, linear: bool) -> np.ndarray:
    if not linear:
        return cfa
    c = np.clip(cfa, 0, None)
    return np.where(c <= 0.0031308, 12.92 * c, 1.055 * np.power(c, 1 / 2.4) - 0.055).astype(np.float32)


def _decode(rgb: np.ndarray, linear: bool) -> np.ndarray:
    if not linear:
        return rgb
    c = np.clip(rgb, 0, None)
    return np.where(c <= 0.04045, c / 12.92, np.power((c + 0.055) / 1.055, 2.4)).astype(np.float32)


def _check_cfa(cfa) -> np.ndarray:
    a = np.asarray(cfa)
    if a.ndim != 2 or min(a.shape) < 2:
        raise ValueError(f"CFA must be a 2-D (H, W) array, got shape {a.shape}")
    return a.astype(np.float32, copy=False)


def demosaic_bayer(cfa: np.ndarray, pattern="RGGB", *, linear: bool = False, tile: int = 512, device: str | None = None) -> np.ndarray:
    """Demosaic a Bayer mosaic with the learned network.

    Args:
        cfa: ``(H, W)`` float32 mosaic, white-balanced, values in [0, 1]
            (display-encoded unless ``linear``).  Any size >= 2x2.
        pattern: The 2x2 CFA from the top-left pixel: ``"RGGB"``, ``"BGGR"``,
            ``"GRBG"``, ``"GBRG"`` or a 2x2 index array (see :func:`cfa_pattern`).
        linear: ``cfa`` holds linear values: sRGB-encode before the network
            and decode its output (the network was trained on gamma data).
        tile: Output tile side (even); tiles carry the network's whole
            31 px context, so the result does not depend on it.
        device: Torch device for the network; None: :func:`default_device`.

    Returns:
        ``(H, W, 3)`` float32 RGB in the input's encoding (not clipped).

    Raises:
        ValueError: bad shape or pattern (one green per row and column
            required: a 2x2 Bayer cell).
        ModelError: ``demosaicnet`` weights not installed.
    """
    a = _check_cfa(cfa)
    pat = cfa_pattern(pattern, 2)
    if sorted(pat.ravel().tolist()) != [0, 1, 1, 2] or not (pat[0, 0] == pat[1, 1] == 1 or pat[0, 1] == pat[1, 0] == 1):
        raise ValueError(f"{pattern!r} is not a Bayer pattern (two diagonal greens, one red, one blue)")
    # phase (dy, dx) at which G R / B G starts; reflect padding by an odd amount shifts the lattice by one
    dy = next(y for y in (0, 1) for x in (0, 1) if pat[y, x] == 1 and pat[y, (x + 1) % 2] == 0)
    dx = next(x for x in (0, 1) if pat[dy, x] == 1)
    m = BAYER_MARGIN
    top, left = m + (dy + m) % 2, m + (dx + m) % 2  # padded (0, 0) lands on a G of a G R row
    h, w = a.shape
    bottom, right = m + (top + h + m) % 2, m + (left + w + m) % 2  # even padded size
    padded = np.pad(_encode(a, linear), ((top, bottom), (left, right)), mode="reflect")
    x = _masked(padded, cfa_pattern("GRBG", 2))  # the padded mosaic now has the phase the network was trained on
    y = _run_tiled(load_network("bayer"), x, m, tile, 2, device)
    ky, kx = top - m, left - m
    return _decode(y[:, ky : ky + h, kx : kx + w], linear).transpose(1, 2, 0).copy()


def demosaic_xtrans(cfa: np.ndarray, pattern, *, linear: bool = False, tile: int = 512, device: str | None = None) -> np.ndarray:
    """Demosaic a Fujifilm X-Trans mosaic with the learned network.

    Args:
        cfa: ``(H, W)`` float32 mosaic, white-balanced, [0, 1].
        pattern: The 6x6 CFA from the top-left pixel (36 letters or a 6x6
            index array, e.g. rawpy's ``raw_pattern``).
        linear, tile, device: As :func:`demosaic_bayer` (context 12 px).

    Returns:
        ``(H, W, 3)`` float32 RGB.  The outermost 12 px see reflect-padded
        context (an X-Trans mirror image), so they are slightly less exact.

    Raises:
        ValueError: bad shape or pattern.
        ModelError: ``demosaicnet`` weights not installed.
    """
    a = _check_cfa(cfa)
    pat = cfa_pattern(pattern, 6)
    m = XTRANS_MARGIN
    h, w = a.shape
    x = np.pad(_masked(_encode(a, linear), pat), ((0, 0), (m, m), (m, m)), mode="reflect")
    y = _run_tiled(load_network("xtrans"), x, m, tile, 1, device)
    return _decode(y, linear).transpose(1, 2, 0).copy()

