"""Tile size from a memory budget, by a per-architecture memory curve measured at first use.

Parameter counts say little about inference memory: activations dominate and
grow with the tile's pixels (linearly for convolutions and windowed attention,
quadratically for global spatial attention).  So the first time a model runs
on a device and dtype, :func:`curve_for` measures the peak memory of forward
passes at three small tile sizes and fits

    peak(P) = a + b P + c P^2,      P = batch x (tile + 2 context)^2 input pixels

(``c`` only for architectures with global attention, clamped at >= 0; freed
heap memory is returned to the OS before each pass), then caches the fit in
``~/.cache/restore/memory-curves.json`` keyed by architecture, weight shapes,
device type, dtype and torch version.  :func:`tile_for_budget` inverts it: the
largest tile (a multiple of the model's ``multiple_of``) whose predicted peak
stays within the budget.  The tiler still halves the tile on out-of-memory.

Peak measurement: CUDA - ``torch.cuda.max_memory_allocated`` after
``reset_peak_memory_stats``; CPU - the process's resident high-water mark
(``VmHWM``), reset before each pass by writing ``5`` to ``/proc/self/clear_refs``
(Linux >= 4.0).  Where neither is available no curve is measured and the
caller keeps its fixed tile.
"""

from __future__ import annotations

import re
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from .cache import read_table, update_table

_TABLE = "memory-curves.json"

__all__ = ["MemoryCurve", "measure_curve", "curve_for", "tile_for_budget", "default_budget", "parse_bytes"]

_UNITS = {"": 1, "b": 1, "k": 2**10, "kb": 2**10, "kib": 2**10, "m": 2**20, "mb": 2**20, "mib": 2**20,
          "g": 2**30, "gb": 2**30, "gib": 2**30, "t": 2**40, "tb": 2**40, "tib": 2**40}


def parse_bytes(text: str | int | float) -> int:
    """``"6GB"``, ``"512 MiB"``, ``4e9`` -> bytes (binary units: GB = GiB).

    Raises:
        ValueError: not a size.
    """
    if isinstance(text, (int, float)):
        return int(text)
    m = re.fullmatch(r"\s*([0-9]*\.?[0-9]+)\s*([a-zA-Z]*)\s*", str(text))
    if not m or m.group(2).lower() not in _UNITS:
        raise ValueError(f"not a memory size: {text!r} (e.g. 4GB, 512MiB)")
    return int(float(m.group(1)) * _UNITS[m.group(2).lower()])


@dataclass(frozen=True)
class MemoryCurve:
    """Fitted peak inference memory of one model on one device type and dtype.

    Attributes:
        a: Bytes at zero pixels (fixed workspace), >= 0.
        b: Bytes per input pixel of a forward pass.
        c: Bytes per squared input pixel (global attention), >= 0.
        sizes: Forward sizes (edge in px) that were measured.
        peaks: Measured peaks in bytes, one per size.
        device: ``"cpu"`` or ``"cuda"``.
        dtype: Compute dtype name.
    """

    a: float
    b: float
    c: float
    sizes: tuple
    peaks: tuple
    device: str
    dtype: str

    def predict(self, pixels: float) -> float:
        """Predicted peak bytes for a forward pass over ``pixels`` input pixels (batch included)."""
        return self.a + self.b * pixels + self.c * pixels * pixels

    def describe(self) -> str:
        per_mpx = self.b * 1e6 / 2**20
        quad = f" + {self.c * 1e12 / 2**20:.3g} MiB/Mpx^2" if self.c > 0 else ""
        return f"{self.a / 2**20:.0f} MiB + {per_mpx:.0f} MiB/Mpx{quad} ({self.device}, {self.dtype})"


def _hwm_supported() -> bool:
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
        return "VmHWM" in Path("/proc/self/status").read_text()
    except OSError:
        return False


def _status_kib(key: str) -> int:
    m = re.search(rf"{key}:\s+(\d+)\s+kB", Path("/proc/self/status").read_text())
    return int(m.group(1)) if m else 0


def _trim() -> None:
    """Give freed heap memory back to the OS (glibc ``malloc_trim``), so resident size = memory in use."""
    import ctypes
    import gc

    gc.collect()
    try:
        ctypes.CDLL("libc.so.6").malloc_trim(0)
    except (OSError, AttributeError):
        pass


def _peak_of_pass(forward, x, dev) -> int:
    """Peak bytes above the current level during one ``forward(x)``."""
    import torch

    if dev.type == "cuda":
        torch.cuda.synchronize(dev)
        base = torch.cuda.memory_allocated(dev)
        torch.cuda.reset_peak_memory_stats(dev)
        forward(x)
        torch.cuda.synchronize(dev)
        return int(torch.cuda.max_memory_allocated(dev) - base)
    _trim()
    base = _status_kib("VmRSS")
    with open("/proc/self/clear_refs", "w") as f:
        f.write("5")
    forward(x)
    return max(0, _status_kib("VmHWM") - base) * 1024


def measure_curve(forward, in_channels: int, *, device="cpu", dtype=None, sizes=(64, 128, 192), multiple_of: int = 1,
                  quadratic: bool = False, repeats: int = 2) -> MemoryCurve | None:
    """Measure peak memory of ``forward`` at square inputs of ``sizes`` and fit the curve.

    Args:
        forward: ``(1, C, s, s) -> output`` (the model; called under
            ``torch.inference_mode`` and autocast for fp16/bf16).
        in_channels: C.
        device: Torch device (``cpu`` or ``cuda[:n]``).
        dtype: Compute dtype (``torch.float32`` default).
        sizes: Edge lengths, rounded up to ``multiple_of``; two or more.
        multiple_of: The model's size multiple.
        quadratic: Fit the ``c P^2`` term too (global spatial attention);
            otherwise ``peak = a + b P`` (convolutions, windowed attention).
        repeats: Passes per size; the largest peak is kept. On CPU the
            resident-size peak of the same pass varies up to 2x between
            processes (3 to 6 activation-sized buffers, by how the allocator
            reuses freed blocks), and a budget has to hold for the worse pass.

    Returns:
        The :class:`MemoryCurve`, or None where peak memory cannot be read
        (non-Linux CPU without ``clear_refs``).
    """
    import torch

    dev = torch.device(device)
    dtype = dtype or torch.float32
    if dev.type == "cpu" and not _hwm_supported():
        return None
    sz = sorted({-(-int(s) // multiple_of) * multiple_of for s in sizes})
    peaks = []
    with torch.inference_mode(), torch.autocast(dev.type, dtype=dtype, enabled=dtype != torch.float32):
        forward(torch.rand(1, in_channels, sz[0], sz[0], device=dev))  # warm-up: lazy initialisation, thread pools
        for s in sz:
            x = torch.rand(1, in_channels, s, s, device=dev)
            peaks.append(max(_peak_of_pass(forward, x, dev) for _ in range(repeats)))
            del x
    p = np.array([s * s for s in sz], np.float64)
    y = np.array(peaks, np.float64)
    cols = [np.ones_like(p), p] + ([p * p] if quadratic and len(sz) >= 3 else [])
    coef, *_ = np.linalg.lstsq(np.stack(cols, 1), y, rcond=None)
    a, b = float(coef[0]), float(coef[1])
    c = float(coef[2]) if len(coef) > 2 else 0.0
    if c < 0:  # noise: refit without the quadratic term
        coef, *_ = np.linalg.lstsq(np.stack(cols[:2], 1), y, rcond=None)
        a, b, c = float(coef[0]), float(coef[1]), 0.0
    b = max(b, float(y.max() / p.max()) * 0.5, 1.0)  # never trust a flat line: pixels cost memory
    return MemoryCurve(max(a, 0.0), b, max(c, 0.0), tuple(sz), tuple(int(v) for v in y), dev.type, str(dtype).replace("torch.", ""))


_METHOD = "max2"  # measurement method in the cache key: curves measured another way are measured again


def _key(model, device_type: str, dtype) -> str:
    import torch

    dt = str(dtype).replace("torch.", "")
    return f"{model.arch}/{model.shape_key}/{device_type}/{dt}/torch-{torch.__version__}/{_METHOD}"


def curve_for(model, device, dtype) -> MemoryCurve | None:
    """The cached memory curve of a :class:`restore.models.RestorationModel`, measured on first use.

    Args:
        model: The loaded model (its module, input channels, size multiple).
        device: Torch device the model runs on.
        dtype: Compute dtype (autocast dtype for bf16/fp16).

    Returns:
        The curve, or None for fixed-size networks (they have one tile size)
        and where peak memory cannot be read (see :func:`measure_curve`).

    The cache (``$XDG_CACHE_HOME/restore/memory-curves.json``) is written
    atomically; an unreadable cache is ignored and rewritten; a read-only
    home only means measuring again next time.
    """
    import torch

    dev = torch.device(device)
    key = _key(model, dev.type, dtype)
    cache = read_table(_TABLE)
    if key in cache:
        try:
            d = cache[key]
            return MemoryCurve(**{**d, "sizes": tuple(d["sizes"]), "peaks": tuple(d["peaks"])})
        except TypeError:
            pass
    if model.fixed_size:
        return None
    curve = measure_curve(model.module, model.input_channels, device=dev, dtype=dtype, multiple_of=max(1, model.multiple_of),
                          quadratic=model.tiling_discouraged)
    if curve is None:
        return None
    update_table(_TABLE, key, asdict(curve))
    return curve


def tile_for_budget(curve: MemoryCurve, budget: int, *, context: int = 0, batch: int = 1, multiple_of: int = 1,
                    lo: int = 64, hi: int = 2048) -> int:
    """Largest tile edge (multiple of ``multiple_of``, within ``[lo, hi]``) whose predicted peak fits ``budget`` bytes.

    Returns ``lo`` (rounded up to the multiple) when even that does not fit: the
    tiler's out-of-memory halving takes it from there.
    """
    m = max(1, multiple_of)
    best = -(-lo // m) * m
    t = best
    while t <= hi:
        if curve.predict(batch * (t + 2 * context) ** 2) <= budget:
            best = t
        else:
            break
        t += m if m >= 16 else -(-16 // m) * m
    return best


def default_budget(device) -> int:
    """Default budget in bytes: on CUDA 80 % of the free device memory; on CPU 25 % of the available RAM
    (the rest is left for the input, the output and the rest of the machine), at most 8 GiB."""
    import torch

    dev = torch.device(device)
    if dev.type == "cuda":
        free, _ = torch.cuda.mem_get_info(dev)
        return int(free * 0.8)
    try:
        avail = _meminfo_kib("MemAvailable") * 1024
    except OSError:
        avail = 4 * 2**30
    return int(min(avail * 0.25, 8 * 2**30))


def _meminfo_kib(key: str) -> int:
    m = re.search(rf"{key}:\s+(\d+)\s+kB", Path("/proc/meminfo").read_text())
    if not m:
        raise OSError("no /proc/meminfo")
    return int(m.group(1))
