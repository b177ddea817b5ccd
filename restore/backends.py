"""Inference backends on the CPU: which paths exist, how fast each is here, and ``backend: auto`` (issue 21).

A *backend* is one way of running a loaded model's forward on tiles:

=================  ==========================================================================================
``torch``          the network in PyTorch, fp32 (with the fused window attention the architecture declares,
                   :mod:`restore.models.fused_attention`); the reference every other path is compared to
``torch-bf16``     the same under ``torch.autocast(bfloat16)``: only on CPUs with native bf16 (AMX or
                   AVX512-BF16, :func:`restore.tiling.cpu_has_fast_bf16`; elsewhere bf16 is emulated, about
                   500x slower), and for ``auto`` only for architectures whose bf16 cost was measured and
                   accepted (the descriptor's ``cpu_bf16`` verdict: <= 0.02 dB PSNR-Y on Set5)
``torch-compile``  ``torch.compile`` (TorchInductor) of the fp32 network, kernels cached on disk
``onnxruntime``    the ONNX export (:mod:`restore.models.onnx`) in ONNX Runtime, fp32
``openvino``       the ONNX export in OpenVINO, fp32 (precision hint f32)
=================  ==========================================================================================

``backend: auto`` (:func:`backend_for`) times every path available here on one probe tile
(:data:`PROBE_TILE` px, or the architecture's ``probe_tile``; the thread count the run uses), checks each fp32
path's output against ``torch`` (max absolute difference <= :data:`MAX_DIFF`), and keeps the fastest, but moves
off ``torch`` only for a path at least :data:`MARGIN` faster (timing noise never picks a slower path).  The
choice is cached in ``~/.cache/restore/backends.json`` per CPU (:func:`restore.threads.machine_key`: name,
family/model, ISA flags), usable CPU count, architecture and weight shapes, probe tile, torch and runtime
versions and a digest of the kernels' code
(:func:`restore.models.onnx.code_digest`), like the thread count (:mod:`restore.threads`).  On CUDA and MPS
``auto`` is ``torch`` (the ``precision`` option then decides fp16/bf16).

:func:`gemm_rate` measures this machine's matrix-multiply rate, the ceiling the model figures of
``restore bench --backends`` are a fraction of (:func:`model_flops` counts a forward's FLOPs).
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import TYPE_CHECKING, Callable, Literal, Mapping, get_args

import torch

from .errors import RestoreError

if TYPE_CHECKING:  # pragma: no cover
    from .models import RestorationModel

__all__ = [
    "BACKENDS",
    "Backend",
    "MARGIN",
    "MAX_DIFF",
    "PER_SHAPE",
    "PROBE_TILE",
    "Choice",
    "backend_for",
    "build_forward",
    "choose",
    "eligible",
    "gemm_rate",
    "measure",
    "model_flops",
    "unavailable",
]

#: A backend's name (the ``model`` step's ``backend`` option adds ``auto``): the one place the names are written.
Backend = Literal["torch", "torch-bf16", "torch-compile", "onnxruntime", "openvino"]
#: Every backend name, in the order ``auto`` times them (``torch`` first: it is the reference).
BACKENDS: tuple[str, ...] = get_args(Backend)
#: The in-process PyTorch paths of :data:`BACKENDS` (no export, no per-shape session); the rest are separate runtimes.
TORCH_PATHS = ("torch", "torch-bf16", "torch-compile")
#: Paths that build something per input shape (a compiled graph; an ONNX export and a session): the tiler gives
#: them input windows of one shape (:attr:`restore.tiling.TileSpec.uniform`).
PER_SHAPE = ("torch-compile", "onnxruntime", "openvino")

#: Largest max absolute difference to fp32 ``torch`` an fp32 backend may have on the probe tile (values in
#: the model's [0, 1] encoding) to be chosen by ``auto``: the issue-21 rule for restoration models, and far
#: below what costs an SR model 0.02 dB PSNR-Y.
MAX_DIFF = 1e-4

#: ``auto`` leaves ``torch`` only for a path at least this much faster on the probe tile (5 %).
MARGIN = 0.05

#: Edge of the probe tile ``auto`` times, in input pixels (rounded up to the model's size multiple; a
#: fixed-size model's native size): the tile the issue-21 figures are quoted at.
PROBE_TILE = 128

_TABLE = "backends.json"


def unavailable(model: RestorationModel, backend: str, device: torch.device) -> str | None:
    """Why ``backend`` cannot run ``model`` on ``device`` here (one line), or None when it can.

    Raises:
        RestoreError: ``backend`` is not one of :data:`BACKENDS`.
    """
    from .models.onnx import runtime_missing
    from .tiling import cpu_has_fast_bf16

    if backend not in BACKENDS:
        raise RestoreError(f"unknown backend {backend!r}; use auto or one of {', '.join(BACKENDS)}")
    if backend in ("torch", "torch-compile"):
        return None
    if backend == "torch-bf16":
        if not model.supports_bfloat16:
            return "the architecture is not safe in bfloat16"
        if device.type == "cpu" and not cpu_has_fast_bf16():
            return "this CPU has neither AMX nor AVX512-BF16: bf16 would be emulated"
        return None
    if device.type != "cpu":
        return f"{backend} runs here on the CPU only"
    return runtime_missing(backend)


def eligible(model: RestorationModel, backend: str, device: torch.device, precision: str = "auto",
             compile: bool = False) -> str | None:
    """Why ``auto`` must not pick ``backend`` (one line), or None when it may (it still has to be measured).

    Beyond :func:`unavailable`: bf16 only where the architecture's CPU bf16 cost was measured and accepted
    (``model.info.cpu_bf16_ok``) and ``precision`` is ``auto`` or ``bf16``; fp32 backends not when
    ``precision`` is ``bf16``; ``torch-compile`` only with ``compile`` (the step's ``compile: true``: compiling
    to measure takes minutes on a CPU, and it measured no faster than ``torch`` on DAT-light, benchmarks/RESULTS.md).
    """
    why = unavailable(model, backend, device)
    if why:
        return why
    if backend == "torch-compile" and not compile:
        return "compile: false"
    if backend == "torch-bf16":
        if precision not in ("auto", "bf16"):
            return f"precision {precision}"
        if not model.info.cpu_bf16_ok:
            return "bf16 cost not measured for this architecture"
    elif precision == "bf16":
        return "precision bf16"
    return None


def build_forward(model: RestorationModel, backend: str, device: torch.device,
                  compiled: Callable[[torch.nn.Module], Callable] | None = None) -> tuple[Callable, torch.dtype]:
    """The network forward and compute dtype of ``backend``.

    The forward runs the network alone, on its full input ``(B, model.input_channels, h, w)`` (side-input
    channels after the image's); :meth:`RestorationModel.forward_for(device, network=forward)
    <restore.models.RestorationModel.forward_for>` puts a model's side input (the RAW denoiser's sigma map, the
    RGB denoiser's noise level, RRFormer's hypercolumn) in front of it, computed in PyTorch per image, so a
    compiled graph or an ONNX export never holds one image's side input.

    Args:
        model: The loaded model.
        backend: One of :data:`BACKENDS`.
        device: Where it runs.
        compiled: How ``torch-compile`` compiles the module (the model step passes its cached wrapper,
            :func:`restore.pipeline.model_run._compiled_forward`); default ``torch.compile(dynamic=False)``.

    Returns:
        ``(forward, dtype)``: ``forward`` maps network inputs to the output; ``dtype`` is what the tiler
        autocasts to (``torch.bfloat16`` for ``torch-bf16``, else ``torch.float32``).

    Raises:
        RestoreError: the backend cannot run here (:func:`unavailable`).
    """
    why = unavailable(model, backend, device)
    if why:
        raise RestoreError(f"backend {backend}: {why}")
    module = model.module.to(device)
    if backend in ("torch", "torch-bf16"):
        return module, torch.bfloat16 if backend == "torch-bf16" else torch.float32
    if backend == "torch-compile":
        return (compiled(module) if compiled else torch.compile(module, dynamic=False)), torch.float32
    from .models.onnx import OnnxForward

    return OnnxForward(model, backend), torch.float32


def probe_shape(model: RestorationModel) -> tuple[int, int]:
    """``(H, W)`` of the probe tile: the architecture's ``probe_tile`` (:class:`~restore.models.archs.ArchInfo`)
    or :data:`PROBE_TILE`, rounded up to the size multiple; or the native size of a fixed-size model."""
    if model.fixed_size:
        return tuple(model.fixed_size)  # type: ignore[return-value]
    mult = max(1, model.multiple_of)
    edge = max(-(-(model.info.probe_tile or PROBE_TILE) // mult) * mult, model.min_size)
    return edge, edge


def _call(forward: Callable, x: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
    with torch.inference_mode(), torch.autocast(x.device.type, dtype=dtype, enabled=dtype != torch.float32):
        return forward(x).float()


def _first_line(e: BaseException) -> str:
    return (str(e).strip().splitlines() or [type(e).__name__])[0][:200]


def measure(model: RestorationModel, backends: list[str], device: torch.device, repeat: int = 3,
            compiled: Callable[[torch.nn.Module], Callable] | None = None) -> dict[str, dict]:
    """Time each backend's network forward (:func:`build_forward`) on the probe tile, a seeded random
    ``(1, model.input_channels, H, W)`` input (side inputs, computed in PyTorch whatever the path, are not
    timed), and compare its output with fp32 ``torch``.

    Every backend is built and called once first (the warm-up compiles, exports, builds kernels); then the timed
    calls run in ``repeat`` interleaved rounds (A B C, A B C ...) and each backend keeps its best, so a moment of
    load on a shared machine does not fall on one path only.

    Returns:
        ``{backend: {"seconds": float, "max_diff": float}}``, or ``{"error": "one line"}`` for a backend that
        failed to build or run.  Torch's thread count is left as it is.

    Raises:
        Whatever building or running ``torch`` itself raises (there is nothing to fall back to).
    """
    h, w = probe_shape(model)
    # the network's full input (side-input channels too): the side input is computed in PyTorch whatever the path
    x = torch.rand(1, model.input_channels, h, w, generator=torch.Generator().manual_seed(0)).to(device)
    errors = (MemoryError, RestoreError, RuntimeError, ValueError, TypeError, ImportError, OSError)
    out: dict[str, dict] = {}
    ready: dict[str, tuple[Callable, torch.dtype]] = {}
    ref = None
    for name in ["torch"] + [b for b in backends if b != "torch"]:
        try:
            forward, dtype = build_forward(model, name, device, compiled)
            y = _call(forward, x, dtype)
        except errors as e:
            if name == "torch":
                raise
            out[name] = {"error": _first_line(e)}
            continue
        if ref is None:
            ref = y
        ready[name] = (forward, dtype)
        out[name] = {"seconds": float("inf"), "max_diff": float((y - ref).abs().max())}
    for _ in range(max(1, repeat)):
        for name, (forward, dtype) in list(ready.items()):
            try:
                if device.type == "cuda":
                    torch.cuda.synchronize()
                t0 = time.perf_counter()
                _call(forward, x, dtype)
                if device.type == "cuda":
                    torch.cuda.synchronize()
            except errors as e:
                if name == "torch":
                    raise
                out[name] = {"error": _first_line(e)}
                del ready[name]
                continue
            out[name]["seconds"] = min(out[name]["seconds"], time.perf_counter() - t0)
    return out


@dataclass(frozen=True)
class Choice:
    """What ``backend: auto`` chose: the backend, a one-line reason (timings or why measuring was skipped), and
    the fastest PyTorch path (``fallback``), used instead of a separate runtime for an image that runs as one
    whole tile: each such image is a new shape, and a runtime spends seconds per shape on its session
    (ONNX Runtime, DAT-light: 2-6 s per shape on the 2-core development VM, benchmarks/RESULTS.md)."""

    backend: str
    reason: str
    fallback: str = "torch"


def choose(table: Mapping[str, Mapping], allowed: Mapping[str, str | None], max_diff: float = MAX_DIFF,
           margin: float = MARGIN, probe: int = PROBE_TILE) -> Choice:
    """Pick the backend from a timing table (:func:`measure`'s result).

    The fastest of the backends that ran, that ``allowed`` permits (``allowed[name]`` None; a string is the
    reason not to), and, for fp32 backends, whose ``max_diff`` is within ``max_diff`` (``torch-bf16``'s
    quality is the architecture's measured verdict instead, checked by :func:`eligible`); a PyTorch path
    other than ``torch`` only when at least ``margin`` faster than ``torch``, and a separate runtime (ONNX
    Runtime, OpenVINO: an export and a session per tile shape, seconds each) only when at least ``margin``
    faster than the best PyTorch path.  Without a ``torch`` timing, ``torch``.

    ``probe`` is the probe tile's edge the reason names.

    Returns:
        :class:`Choice` naming the backend, with every timing in the reason.
    """
    base = table.get("torch", {}).get("seconds")
    parts = []
    for name, row in table.items():
        if "seconds" not in row:
            parts.append(f"{name} failed")
            continue
        off = name != "torch-bf16" and not row.get("max_diff", float("inf")) <= max_diff
        parts.append(f"{name} {row['seconds'] * 1000:.0f} ms" + (f" (max diff {row.get('max_diff', float('nan')):.1e}: excluded)" if off else ""))
    timings = ", ".join(parts)
    if base is None:
        return Choice("torch", f"torch (no timing of torch: {timings or 'nothing measured'})")

    def usable(name: str) -> bool:
        row = table.get(name, {})
        if "seconds" not in row or allowed.get(name, "not allowed") is not None:
            return False
        return name == "torch-bf16" or row.get("max_diff", float("inf")) <= max_diff

    # in-process PyTorch paths first: another must beat torch fp32 by the margin
    best, best_s = "torch", float(base)
    for name in TORCH_PATHS[1:]:
        if name in table and usable(name) and table[name]["seconds"] <= base * (1 - margin) and table[name]["seconds"] < best_s:
            best, best_s = name, float(table[name]["seconds"])
    # a separate runtime (per-shape export and session set-up) must beat the best PyTorch path by the margin
    torch_best, torch_fallback = best_s, best
    for name, row in table.items():
        if name in TORCH_PATHS or not usable(name):
            continue
        if row["seconds"] <= torch_best * (1 - margin) and row["seconds"] < best_s:
            best, best_s = name, float(row["seconds"])
    skipped = [f"{n}: {why}" for n, why in allowed.items() if why]
    why = f"; not tried: {'; '.join(skipped)}" if skipped else ""
    return Choice(best, f"backend auto: {best} ({timings} per {probe}-px probe tile{why})", fallback=torch_fallback)


def backend_for(model: RestorationModel, device: torch.device, precision: str = "auto",
                compiled: Callable[[torch.nn.Module], Callable] | None = None,
                measure_fn: Callable[..., dict] | None = None, compile: bool = False) -> Choice:
    """``backend: auto``: the fastest allowed backend for ``model`` here, measured once and cached.

    Args:
        model: The loaded model (its side inputs need not be bound: the probe is the network alone).
        device: Where it runs; not the CPU: ``torch``.
        precision: The step's ``precision`` option (``fp32`` excludes ``torch-bf16``; ``bf16`` allows only it).
        compiled: The step's ``torch.compile`` wrapper (see :func:`build_forward`).
        measure_fn: Replaces :func:`measure` (tests give a mocked timing table).
        compile: Also consider ``torch-compile`` (the step's ``compile: true``).

    Returns:
        :class:`Choice`; its reason says whether it was measured now or read from the cache.
    """
    import torch as _torch

    from .cache import read_table, update_table
    from .threads import _usable_cpus, machine_key

    if device.type != "cpu":
        return Choice("torch", f"backend auto: torch on {device.type}")
    if precision == "bf16":
        why = unavailable(model, "torch-bf16", device)
        if why:
            raise RestoreError(f"precision bf16: {why}")
        return Choice("torch-bf16", "backend auto: torch-bf16 (precision bf16)")
    allowed = {b: eligible(model, b, device, precision, compile) for b in BACKENDS}
    candidates = [b for b in BACKENDS if allowed[b] is None]
    if candidates == ["torch"]:
        return Choice("torch", "backend auto: torch (" + "; ".join(f"{b}: {w}" for b, w in allowed.items() if w) + ")")
    versions = [f"torch-{_torch.__version__}"]
    for mod in ("onnxruntime", "openvino"):
        if allowed.get(mod) is None:
            try:
                versions.append(f"{mod}-{__import__(mod).__version__}")
            except Exception:  # pragma: no cover - allowed means importable
                pass
    from .models.onnx import code_digest

    probe = probe_shape(model)
    key = (f"{machine_key()}/{_usable_cpus()}cpu/{_torch.get_num_threads()}threads/{model.arch}/{model.shape_key}/"
           f"probe{probe[0]}x{probe[1]}/{precision}/{'+'.join(candidates)}/{'/'.join(versions)}/code-{code_digest()}")
    hit = read_table(_TABLE).get(key)
    if isinstance(hit, dict) and hit.get("backend") in candidates and hit.get("fallback", "torch") in candidates:
        return Choice(hit["backend"], f"{hit.get('reason', 'backend auto: ' + hit['backend'])} (measured before)",
                      hit.get("fallback", "torch"))
    table = (measure_fn or measure)(model, candidates, device, compiled=compiled)
    choice = choose(table, allowed, probe=probe[0])
    update_table(_TABLE, key, {"backend": choice.backend, "reason": choice.reason, "fallback": choice.fallback})
    return Choice(choice.backend, f"{choice.reason} (measured now)", choice.fallback)


def gemm_rate(dtype: torch.dtype = torch.float32, n: int = 2048, repeat: int = 3) -> float:
    """This machine's square matrix-multiply rate in GFLOP/s (``2 n^3`` FLOPs per product, best of ``repeat``
    after one warm-up; torch's current thread count): the ceiling a model's FLOP rate is compared with."""
    a = torch.rand(n, n).to(dtype)
    b = torch.rand(n, n).to(dtype)
    torch.mm(a, b)
    best = float("inf")
    for _ in range(max(1, repeat)):
        t0 = time.perf_counter()
        torch.mm(a, b)
        best = min(best, time.perf_counter() - t0)
    return 2 * n**3 / best / 1e9


def model_flops(model: RestorationModel, shape: tuple[int, int]) -> float:
    """FLOPs of one fp32 forward of ``model``'s network on a ``(1, C, H, W)`` input (``shape`` = ``(H, W)``,
    ``C`` = ``model.input_channels``: a side input's own network, e.g. RRFormer's VGG19, is not counted), as
    :class:`torch.utils.flop_counter.FlopCounterMode` counts them: matrix products and convolutions (2 per
    multiply-add, including the fused attention's), not element-wise work.

    PyTorch's counter has no formula for the CPU flash-attention op
    (``aten._scaled_dot_product_flash_attention_for_cpu``), so one is added here: without it, a model run
    through the fused kernel would count 34 % fewer FLOPs (DAT-light x2, 128 px: 17.30 instead of 26.36
    GFLOP) than the same products written as matmuls.  The count is of the products the path runs: the
    fused kernel's second pass over shift-masked edge windows (:func:`restore.models.fused_attention.attend`)
    counts too (27.56 GFLOP there)."""
    from torch.utils import flop_counter as fc

    def cpu_sdpa(query, key, value, *args, out_shape=None, **kwargs) -> int:
        return fc.sdpa_flop_count(query, key, value)

    x = torch.rand(1, model.input_channels, *shape)  # the network alone, as :func:`measure` times it
    forward = model.module.to("cpu")
    counter = fc.FlopCounterMode(display=False,
                                 custom_mapping={torch.ops.aten._scaled_dot_product_flash_attention_for_cpu: cpu_sdpa})
    with torch.inference_mode(), counter:
        forward(x)
    return float(counter.get_total_flops())
