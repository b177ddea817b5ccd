"""Fused window attention at inference: the generic kernels, and applying the patches descriptors declare.

The official code of the window-attention transformers spandrel carries computes
window attention step by step: ``A = (q * scale) @ k^T``, ``A += relative
position bias (+ shift mask)``, ``softmax(A) @ v``, which writes and re-reads the
full ``(windows, heads, N, N)`` attention map several times, and it rebuilds
constant tensors on every call (position-bias MLPs, shifted-window masks for any
size other than the training size).  On a CPU that bookkeeping, not the matrix
products, dominated a 128-px tile of the split-window transformer (a profile:
27 % additions of bias/mask, 18 % softmax, 9 % batched matmul).

This module holds what every such patch shares: :func:`attend` (one call of
:func:`torch.nn.functional.scaled_dot_product_attention`, a fused kernel on CPU
and CUDA, with the bias as its additive ``attn_mask`` and the shift mask applied
only to the edge windows it touches), :func:`cached_bias` (the position bias,
cached until the weights change), :func:`cached_mask` (shift masks per input
size in a small byte-bounded LRU), :class:`EdgeMask`, and
:func:`apply_patches`, which swaps, per module instance, the forwards an
architecture's descriptor declares
(:attr:`restore.models.archs.ArchInfo.attention`, :class:`restore.models.archs.AttentionPatch`;
the replacements live next to each architecture in ``restore/models/archs/spandrel_*.py``).
Each replacement is the same function: in float32 the outputs agree with the
official forward to float rounding (tested to 1e-5), the parameters and
state-dict names are untouched, so official checkpoints load unchanged.  The
fused forward runs only for inference (no autograd, ``module.training``
False); otherwise the official forward runs.

Set ``RESTORE_FUSED_ATTENTION=0`` to keep the official forwards (for A/B checks).
"""

from __future__ import annotations

import functools
import importlib
import os
import threading
import types
from collections import OrderedDict
from collections.abc import Iterable
from typing import TYPE_CHECKING, Callable

import torch
import torch.nn.functional as F
from torch import nn

if TYPE_CHECKING:
    from .archs._base import AttentionPatch

__all__ = [
    "compiling",
    "fuse_attention",
    "apply_patches",
    "attend",
    "cached_bias",
    "cached_mask",
    "inference_only",
    "clear_mask_cache",
    "EdgeMask",
    "MASK_CACHE_BYTES",
]

#: Upper bound on the bytes of shift masks kept between calls (all models together).
MASK_CACHE_BYTES = 256 * 2**20

_masks: OrderedDict[tuple, object] = OrderedDict()
_mask_bytes = 0
_lock = threading.Lock()


def _nbytes(obj) -> int:
    if isinstance(obj, EdgeMask):
        return obj.nbytes
    if isinstance(obj, torch.Tensor):
        return obj.numel() * obj.element_size()
    if isinstance(obj, (tuple, list)):
        return sum(_nbytes(o) for o in obj)
    return 0


def clear_mask_cache() -> None:
    """Drop every cached shift mask (the tiler calls it before retrying a smaller tile after an
    out-of-memory error, so masks of the failed size do not keep device memory)."""
    global _mask_bytes
    with _lock:
        _masks.clear()
        _mask_bytes = 0


def compiling() -> bool:
    """True while ``torch.compile`` or the ONNX exporter's tracer traces: the caches (a lock, weight versions,
    data-dependent edge-window indices, tensors made under inference mode) are skipped then, so the whole
    network is one graph that computes its masks and biases itself (dense masks: no data-dependent window
    selection)."""
    return torch.compiler.is_compiling() or torch.jit.is_tracing()


def _cached_mask(key: tuple, make: Callable[[], object]):
    """``make()`` memoised under ``key`` in a process-wide LRU bounded by :data:`MASK_CACHE_BYTES`
    (not while compiling: :func:`compiling`)."""
    global _mask_bytes
    if compiling():
        return make()
    with _lock:
        hit = _masks.get(key)
        if hit is not None:
            _masks.move_to_end(key)
            return hit
    value = make()
    size = _nbytes(value)
    with _lock:
        if key not in _masks:
            _masks[key] = value
            _mask_bytes += size
            while _mask_bytes > MASK_CACHE_BYTES and len(_masks) > 1:
                _, old = _masks.popitem(last=False)
                _mask_bytes -= _nbytes(old)
    return value


def _inference(module: nn.Module) -> bool:
    return not module.training and not torch.is_grad_enabled()


def _weights_key(params) -> tuple:
    """Identity of the current weight values: in-place loads bump ``_version``."""
    try:
        return tuple((p.data_ptr(), p._version) for p in params)
    except RuntimeError:  # inference tensors track no version: never cache
        return (object(),)


def _cached_bias(module: nn.Module, params, make: Callable[[], torch.Tensor], dtype: torch.dtype, device: torch.device) -> torch.Tensor:
    """The ``(heads, N, N)`` position bias ``make()`` cast to ``dtype``, cached on ``module``
    until its weights change (not while compiling: :func:`compiling`)."""
    if compiling():
        return make().to(device=device, dtype=dtype)
    key = (_weights_key(params), dtype, device)
    hit = module.__dict__.get("_restore_bias")
    if hit is not None and hit[0] == key:
        return hit[1]
    bias = make().to(device=device, dtype=dtype).contiguous()
    module.__dict__["_restore_bias"] = (key, bias)
    return bias


class EdgeMask:
    """A shifted-window mask kept only for the windows it touches.

    ``idx``: ``(nE,)`` indices of the windows with a non-zero mask; ``masks``:
    their ``(nE, N, N)`` masks (0 / -100, float32); ``windows``: the total
    window count ``nW``.  The full ``(nW, N, N)`` mask is mostly zeros (only the
    bottom and right edge windows mix wrapped-around regions) and at a 512-px
    DAT tile weighs 268 MB per branch; this form weighs 8 % of it.
    """

    def __init__(self, idx: torch.Tensor, masks: torch.Tensor, windows: int):
        self.idx, self.masks, self.windows = idx, masks, windows
        self._cast: dict[torch.dtype, torch.Tensor] = {masks.dtype: masks}
        self.shape = (windows, *masks.shape[1:])

    @property
    def nbytes(self) -> int:
        return sum(t.numel() * t.element_size() for t in (self.idx, *self._cast.values()))

    def cast(self, dtype: torch.dtype) -> torch.Tensor:
        if dtype not in self._cast:
            self._cast[dtype] = self.masks.to(dtype)
        return self._cast[dtype]

    @classmethod
    def from_region_ids(cls, ids: torch.Tensor) -> "EdgeMask":
        """From ``(nW, N)`` region ids per window: tokens attend only within their own region."""
        edge = (ids.amin(dim=1) != ids.amax(dim=1)).nonzero().flatten()
        sub = ids.index_select(0, edge)
        masks = torch.zeros(sub.shape[0], sub.shape[1], sub.shape[1], device=ids.device)
        masks.masked_fill_(sub.unsqueeze(1) != sub.unsqueeze(2), -100.0)
        return cls(edge, masks, ids.shape[0])


def _masked_windows(mask: torch.Tensor | EdgeMask, dtype: torch.dtype) -> tuple[torch.Tensor, torch.Tensor]:
    """Indices of the windows whose shift mask is not all zero, and their masks in ``dtype``.

    Only windows along the bottom and right edges mix wrapped-around regions; the
    rest (about 70 % of a 128-px tile's windows, more on larger tiles) are unmasked.
    Cached on the mask tensor itself (the masks are cached, or model buffers)."""
    if isinstance(mask, EdgeMask):
        return mask.idx, mask.cast(dtype)
    hit = getattr(mask, "_restore_edges", None)
    if hit is None or hit[1].dtype != dtype:
        idx = (mask != 0).flatten(1).any(dim=1).nonzero().flatten()
        hit = (idx, mask.index_select(0, idx).to(dtype))
        mask._restore_edges = hit
    return hit


#: Blocked CPU attention (:func:`_attend_blocked`): score elements per block of windows (4 MiB of float32, so a
#: block's scores stay in cache between the product, the softmax and the second product).
BLOCK_SCORES = 1 << 20
#: Windows of at most this many tokens take the blocked path on the CPU; larger ones use the fused kernel.
#: Measured (``python benchmarks/attention_kernels.py``, AMD EPYC family 26, 2 threads): DAT-light x2 (256-token
#: windows) 1.3-1.4x faster per 128-px tile in fp32, 1.06-1.4x in bf16; the kernels alone are within the VM's
#: noise of each other on 256-token windows, faster on 64-token ones (SwinIR-like: 17.0 vs 13.7 ms), and one run
#: at 512 tokens measured the blocked form 1.8x slower, so longer windows keep the fused kernel.
BLOCK_MAX_TOKENS = 256


def _use_blocked(q: torch.Tensor) -> bool:
    return (q.device.type == "cpu" and q.shape[-2] <= BLOCK_MAX_TOKENS and not torch.is_grad_enabled()
            and not compiling() and os.environ.get("RESTORE_BLOCKED_ATTENTION", "1") != "0")


def _attend_blocked(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, bias: torch.Tensor,
                    mask: torch.Tensor | EdgeMask | None, scale: float) -> torch.Tensor:
    """:func:`_attend` on the CPU, a block of windows at a time: ``S = q k^T * scale + bias (+ mask)``,
    ``softmax(S)``, then ``(v^T S^T)^T`` (``q * scale`` first, as the official code).

    Against one fused SDPA call per window set, this runs the shift-masked edge windows once (the fused path
    runs them a second time with a materialised bias + mask) and adds the mask only to the scores it is computing
    anyway.  A block's scores stay in cache across the three steps, and the second product as ``v^T S^T`` gives the
    GEMM a long inner dimension (``N x N`` times ``N x d`` with d = 10 measured 4x slower as written).  Scores and
    softmax are float32 for every input dtype (bf16 inputs: scores from upcast q and k, probabilities cast back
    for ``@ v``), so bf16 loses no more than in the fused kernel.
    Matches :func:`torch.nn.functional.scaled_dot_product_attention` to float rounding (1e-6 in float32).
    """
    bw, heads, n, d = q.shape
    pos: list[int] = []
    m = None
    if mask is not None:
        nw = mask.shape[0]
        idx, m = _masked_windows(mask, torch.float32)
        pos = [-1] * nw
        for j, w in enumerate(idx.tolist()):
            pos[w] = j
    block = max(1, BLOCK_SCORES // (heads * n * n))
    low = q.dtype != torch.float32
    out_t = torch.empty(bw, heads, d, n, dtype=q.dtype, device=q.device)
    bias32 = bias.float()
    with torch.autocast("cpu", enabled=False):
        kt = k.transpose(-1, -2)
        vt = v.transpose(-1, -2)
        for i in range(0, bw, block):
            j = min(bw, i + block)
            qb, kb = (q[i:j].float(), kt[i:j].float()) if low else (q[i:j], kt[i:j])
            s = torch.matmul(qb * scale, kb).add_(bias32)  # scale on q (d columns), as the official code
            if m is not None:
                for g in range(i, j):
                    e = pos[g % nw]
                    if e >= 0:
                        s[g - i].add_(m[e])
            p = torch.softmax(s, -1)
            torch.matmul(vt[i:j], (p.to(q.dtype) if low else p).transpose(-1, -2), out=out_t[i:j])
    return out_t.transpose(-1, -2)


def _attend(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, bias: torch.Tensor, mask: torch.Tensor | EdgeMask | None, scale: float) -> torch.Tensor:
    """``softmax(q k^T * scale + bias [+ mask]) @ v`` with fused kernels.

    On the CPU, windows of at most :data:`BLOCK_MAX_TOKENS` tokens run blocked (:func:`_attend_blocked`).
    Elsewhere all windows run with the shared bias (broadcast, never materialised per
    window); the few windows the shift mask touches run again with bias + mask
    and overwrite their rows, instead of adding the ``(windows, heads, N, N)``
    mask to every window on every call.

    Args:
        q, k, v: ``(B*nW, heads, N, d)``, windows ordered batch-major as the official code.
        bias: ``(heads, N, N)`` position bias, dtype of ``q``.
        mask: ``(nW, N, N)`` shift mask (0 / -100), an :class:`EdgeMask`, or None.

    Returns:
        ``(B*nW, heads, N, d)`` (on the blocked path a transposed view of a ``(B*nW, heads, d, N)`` tensor).
    """
    if mask is not None and compiling():  # one dense masked call: no data-dependent window selection in the graph
        nw = mask.shape[0]
        full = mask.to(bias.dtype).unsqueeze(1) + bias.unsqueeze(0)  # (nW, heads, N, N)
        out = F.scaled_dot_product_attention(q.unflatten(0, (-1, nw)), k.unflatten(0, (-1, nw)), v.unflatten(0, (-1, nw)),
                                             attn_mask=full, scale=scale)
        return out.flatten(0, 1)
    if _use_blocked(q):
        return _attend_blocked(q, k, v, bias, mask, scale)
    out = F.scaled_dot_product_attention(q, k, v, attn_mask=bias.unsqueeze(0), scale=scale)
    if mask is None:
        return out
    nw = mask.shape[0]
    b = q.shape[0] // nw
    idx, m = _masked_windows(mask, bias.dtype)
    if idx.numel() == 0:
        return out
    h, n, d = q.shape[1:]

    def pick(t: torch.Tensor) -> torch.Tensor:
        return t.unflatten(0, (b, nw)).index_select(1, idx).flatten(0, 1)

    full = (m.unsqueeze(1) + bias.unsqueeze(0)).repeat(b, 1, 1, 1)  # (B*nE, heads, N, N)
    edge = F.scaled_dot_product_attention(pick(q), pick(k), pick(v), attn_mask=full, scale=scale)
    out = out.contiguous()
    out.unflatten(0, (b, nw))[:, idx] = edge.unflatten(0, (b, idx.numel()))
    return out


#: Public names of the kernels for the architecture modules (the private names are kept for callers).
attend = _attend
cached_bias = _cached_bias
cached_mask = _cached_mask
inference_only = _inference


@functools.lru_cache(maxsize=None)
def _resolve(patch: AttentionPatch) -> type | None:
    """The class a patch targets, or None when the installed spandrel lacks its module or class
    (its models then keep the official code)."""
    try:
        mod = importlib.import_module(patch.module)
    except ImportError:  # pragma: no cover - spandrel layout changed
        return None
    return getattr(mod, patch.cls, None)


def _disabled() -> bool:
    return os.environ.get("RESTORE_FUSED_ATTENTION", "1").strip().lower() in ("0", "false", "no", "off")


def apply_patches(model: nn.Module, patches: Iterable[AttentionPatch]) -> int:
    """Give every module of ``model`` whose class a patch targets that patch's fused inference method.

    Patches instances, not classes: other models in the process keep the
    official code.  Idempotent.  Parameters, buffers and state-dict names are
    unchanged.

    Args:
        model: A model built by spandrel (or containing such modules).
        patches: :class:`~restore.models.archs.AttentionPatch` entries, usually
            ``RestorationModel.info.attention``.

    Returns:
        The number of module methods patched (0 when ``RESTORE_FUSED_ATTENTION=0``
        or no module matches).
    """
    if _disabled():
        return 0
    targets = [(cls, p.method, p.fn) for p in patches if (cls := _resolve(p)) is not None]
    count = 0
    for mod in model.modules():
        for cls, name, fn in targets:
            if type(mod) is cls and not getattr(mod, f"_restore_fused_{name}", False):
                setattr(mod, name, types.MethodType(fn, mod))
                mod.__dict__[f"_restore_fused_{name}"] = True
                count += 1
    return count


def fuse_attention(model: nn.Module, patches: Iterable[AttentionPatch] | None = None) -> int:
    """:func:`apply_patches` with ``patches``, or (None) with every patch any descriptor declares.

    Args:
        model: A model built by spandrel (or containing such modules).
        patches: The patches to apply; None: all declared ones
            (:func:`restore.models.archs.declared`).

    Returns:
        The number of module methods patched.
    """
    if patches is None:
        from .archs import declared

        patches = [p for info in declared().values() for p in info.attention]
    return apply_patches(model, patches)
