"""CPU thread count for model inference, measured at first use.

torch's default (one intra-op thread per physical core) is usually right, but
not always: hyper-threads help some kernels (bf16 AMX tiles, depthwise
convolutions) and hurt others, and containers often see fewer usable CPUs
than ``os.cpu_count()``.  :func:`threads_for` times the model's forward on a
small tile at each candidate count (:func:`candidate_counts`), keeps the
fastest, and caches the choice in ``~/.cache/restore/threads.json`` keyed by
CPU (name, family/model, ISA flags: :func:`machine_key`), usable CPU count, architecture, dtype and torch version, so the
measurement (about a second) happens once per machine and model.

Measured on the 2-core development VM: DAT-light x2 whole-image 512x512,
1 thread 61.1 s vs 2 threads 40.1 s (benchmarks/RESULTS.md).
"""

from __future__ import annotations

import os
import time
from pathlib import Path
from typing import Callable

from .cache import read_table, update_table

_TABLE = "threads.json"

__all__ = ["candidate_counts", "measure_threads", "threads_for"]


def _usable_cpus() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        return os.cpu_count() or 1


def _physical_cores() -> int:
    """Physical cores among the usable CPUs (from /proc/cpuinfo; the usable count elsewhere)."""
    usable = _usable_cpus()
    try:
        text = Path("/proc/cpuinfo").read_text()
    except OSError:
        return usable
    cores, cur = set(), {}
    for line in text.splitlines() + [""]:
        if not line.strip():
            if "processor" in cur:
                cores.add((cur.get("physical id", "0"), cur.get("core id", cur["processor"])))
            cur = {}
            continue
        k, _, v = line.partition(":")
        cur[k.strip()] = v.strip()
    return max(1, min(len(cores) or usable, usable))


def candidate_counts() -> list[int]:
    """Thread counts worth timing: half the physical cores, the physical cores, every usable CPU."""
    phys, usable = _physical_cores(), _usable_cpus()
    return sorted({max(1, phys // 2), phys, usable})


def measure_threads(fn: Callable[[], object], candidates: list[int], repeat: int = 2) -> dict[int, float]:
    """Best-of-``repeat`` seconds of ``fn()`` at each thread count (after one warm-up call).

    Restores the thread count that was set before.
    """
    import torch

    before = torch.get_num_threads()
    times: dict[int, float] = {}
    try:
        for n in candidates:
            torch.set_num_threads(n)
            fn()
            best = float("inf")
            for _ in range(max(1, repeat)):
                t0 = time.perf_counter()
                fn()
                best = min(best, time.perf_counter() - t0)
            times[n] = best
    finally:
        torch.set_num_threads(before)
    return times


#: ISA flags that change which kernels (and so which thread count or backend) are fastest.
KEY_FLAGS = ("avx2", "fma", "avx512f", "avx512_bf16", "avx512_vnni", "amx_bf16", "amx_tile", "avx_vnni")


def _cpuinfo() -> dict[str, str]:
    """The first processor's fields of ``/proc/cpuinfo`` (empty where there is none)."""
    try:
        text = Path("/proc/cpuinfo").read_text()
    except OSError:
        return {}
    out: dict[str, str] = {}
    for line in text.splitlines():
        if not line.strip():
            if out:
                break
            continue
        name, _, value = line.partition(":")
        out.setdefault(name.strip(), value.strip())
    return out


def _cpu_name() -> str:
    """The CPU's marketing name (``model name``), for reports."""
    name = _cpuinfo().get("model name")
    if name:
        return name
    import platform

    return platform.processor() or platform.machine()


def cpu_flags() -> list[str]:
    """Which of :data:`KEY_FLAGS` this CPU reports, sorted (empty where ``/proc/cpuinfo`` is absent)."""
    have = set(_cpuinfo().get("flags", "").split())
    return sorted(f for f in KEY_FLAGS if f in have)


def machine_key() -> str:
    """The CPU's identity for caches of measured choices: name, family/model and :data:`KEY_FLAGS`.

    The name alone is not enough: cloud VMs report ``AMD EPYC`` for both Zen 4 (family 25) and Zen 5
    (family 26), whose kernels and best backends differ, and a VM may hide AVX-512 or AMX from a guest.
    """
    info = _cpuinfo()
    fam = info.get("cpu family", "?")
    mod = info.get("model", "?")
    return f"{_cpu_name()} f{fam}m{mod} {'+'.join(cpu_flags()) or 'noflags'}"


def threads_for(key: str, fn: Callable[[], object]) -> tuple[int, str]:
    """The measured best thread count for ``key`` (e.g. architecture and dtype), cached.

    Args:
        key: What the timing depends on besides the machine (architecture, weight
            shapes, dtype); the CPU identity (:func:`machine_key`), usable CPU count and torch version are added.
        fn: One forward pass on a small tile; called ``3 x len(candidates)`` times
            when nothing is cached.

    Returns:
        ``(threads, description)``; the description says whether it was measured
        now or cached and lists the timings.  With a single candidate nothing is
        measured.
    """
    import torch

    cands = candidate_counts()
    full = f"{machine_key()}/{_usable_cpus()}cpu/{key}/torch-{torch.__version__}"
    hit = read_table(_TABLE).get(full)
    if isinstance(hit, dict) and isinstance(hit.get("threads"), int) and hit["threads"] >= 1:
        return hit["threads"], f"threads: {hit['threads']} (measured before: {hit.get('times', '')})"
    if len(cands) == 1:
        return cands[0], f"threads: {cands[0]} (the only usable count)"
    times = measure_threads(fn, cands)
    best = min(times, key=times.get)
    desc = ", ".join(f"{n}: {t * 1000:.0f} ms" for n, t in sorted(times.items()))
    update_table(_TABLE, full, {"threads": best, "times": desc})
    return best, f"threads: {best} (measured now per tile: {desc})"
