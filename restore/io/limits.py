"""Guards against decompression bombs: refuse huge images from their header, before allocating.

Two checks on the size a header claims: the pixel limit (400 MP, ``RESTORE_MAX_PIXELS``), and the memory
the decode and the pipeline's working copies would take against the memory actually available to this
process (``MemAvailable``, the cgroup's limit, ``RLIMIT_AS``): a 634-byte JPEG claiming 18000x18000 is
refused in one line instead of being decoded until the machine runs out of memory.
"""

from __future__ import annotations

import os

from ..errors import InputError

__all__ = ["max_pixels", "check_size", "available_memory", "DECODE_BYTES_PER_PIXEL"]

#: Peak bytes per pixel of decoding an image and the first pipeline stages: up to 4 samples of up to 2 bytes
#: decoded, plus 4 float32 working copies of them (conversion, orientation, a stage's input and output).
DECODE_BYTES_PER_PIXEL = 4 * (2 + 4 * 4)

_DEFAULT_MAX_PIXELS = 400_000_000  # 400 MP: above any camera sensor, below a 100k x 100k bomb


def max_pixels() -> int:
    """Largest accepted image area in pixels (env ``RESTORE_MAX_PIXELS``, default 400 million)."""
    try:
        return int(os.environ.get("RESTORE_MAX_PIXELS", _DEFAULT_MAX_PIXELS))
    except ValueError:
        return _DEFAULT_MAX_PIXELS


def available_memory() -> int:
    """Bytes this process can still allocate: the least of the system's ``MemAvailable``, the cgroup v2
    limit less its usage, and ``RLIMIT_AS`` less the address space in use (where set)."""
    import re
    from pathlib import Path

    avail = []
    try:
        m = re.search(r"MemAvailable:\s+(\d+) kB", Path("/proc/meminfo").read_text())
        if m:
            avail.append(int(m.group(1)) * 1024)
    except OSError:
        pass
    try:
        limit = Path("/sys/fs/cgroup/memory.max").read_text().strip()
        if limit != "max":
            avail.append(int(limit) - int(Path("/sys/fs/cgroup/memory.current").read_text()))
    except (OSError, ValueError):
        pass
    try:
        import resource

        soft, _ = resource.getrlimit(resource.RLIMIT_AS)
        if soft != resource.RLIM_INFINITY:
            m = re.search(r"VmSize:\s+(\d+) kB", Path("/proc/self/status").read_text())
            avail.append(soft - (int(m.group(1)) * 1024 if m else 0))
    except (ImportError, OSError, ValueError):
        pass
    return max(0, min(avail)) if avail else 1 << 62


def check_size(path, width: int, height: int) -> None:
    """Raise :class:`InputError` if a header claims a non-positive size, more pixels than the limit, or more
    than the available memory can decode and process (:data:`DECODE_BYTES_PER_PIXEL`).

    Args:
        path: File named in the error.
        width, height: Size claimed by the file header, in pixels.
    """
    if width <= 0 or height <= 0:
        raise InputError(path, f"invalid image size {width}x{height} in header")
    limit = max_pixels()
    if width * height > limit:
        raise InputError(
            path,
            f"image of {width}x{height} ({width * height / 1e6:.0f} MP) exceeds the limit of "
            f"{limit / 1e6:.0f} MP (set RESTORE_MAX_PIXELS to raise it); refused before decoding",
        )
    need = width * height * DECODE_BYTES_PER_PIXEL
    avail = available_memory()
    if need > avail:
        raise InputError(
            path,
            f"image of {width}x{height} ({width * height / 1e6:.0f} MP) needs about {need / 2**30:.1f} GiB to decode and "
            f"process, {avail / 2**30:.1f} GiB available; refused before decoding",
        )
