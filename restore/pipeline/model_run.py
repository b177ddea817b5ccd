"""Running a restoration model over an image: the one place that turns a model and its run options into a
tiled call of :func:`restore.tiling.run_tiled`.

The model step (:mod:`restore.pipeline.steps.model`), the network HDR merge
(:mod:`restore.pipeline.steps.merge`) and ``restore bench`` (:mod:`restore.bench`) all call
:func:`run_model`, so device, precision, whole image or tiles, tile size, overlap, context, alignment and
threads are decided the same way for each.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING, Any, Callable, Literal

import numpy as np

from ..errors import RestoreError
from .base import Context, warmup

if TYPE_CHECKING:  # pragma: no cover
    import torch

    from ..models import RestorationModel

__all__ = [
    "MIN_GLOBAL_TILE",
    "RunOptions",
    "RunState",
    "device_and_dtype",
    "run_model",
    "tile_spec",
    "wide_overlap",
    "whole_or_large_tiles",
]

#: Smallest tile a global-attention model gets, even when the memory budget asks for less: smaller tiles see
#: too little of the image for its global statistics (benchmarks/whole_vs_tiled.py, weather-starter on the
#: real RainDrop pairs: tiles of 128/192 px lose 0.8/1.1 dB against the whole image and fall below the input
#: on the worst image; 256 px is within 0.01 dB).  A 256 px tile of the starters needs well under 1 GiB.
MIN_GLOBAL_TILE = 256


@dataclass(frozen=True)
class RunOptions:
    """How :func:`run_model` runs a model (the model step's options; a network merge and ``restore bench``
    give the ones they have).

    Attributes:
        tile: Tile edge in input pixels; 0 = whole image; ``"auto"`` = the largest tile the memory budget
            allows by the model's measured memory curve.
        overlap: Input pixels shared by neighbouring tiles; None = the architecture's.
        context: Extra input pixels around each tile, cropped away; None = the architecture's.
        memory: Memory budget (``"4GB"``) for ``tile: auto`` and whole-image decisions; None = the default
            (:func:`restore.memory.default_budget`).
        batch: Tiles per forward pass.
        precision: ``auto``, ``fp32``, ``fp16`` or ``bf16`` (:func:`restore.tiling.resolve_precision`).
        device: ``auto``, ``cpu``, ``cuda[:N]``, ``mps``; a context's device overrides it.
        threads: CPU intra-op threads: a count, ``"auto"`` (measured once, cached), or None (leave
            torch's setting alone).
        compile: Run through ``torch.compile`` where the model allows it (with ``backend: torch``).
        backend: ``torch`` (PyTorch, ``precision`` and ``compile`` as set), ``auto`` (the fastest path measured
            on this machine, :func:`restore.backends.backend_for`), or a named backend of
            :data:`restore.backends.BACKENDS`, which overrides ``precision`` and ``compile``.
        whole_if_fits: The tile was not chosen by the user: an architecture that discourages tiling
            (global attention) runs on the whole image when it fits the memory budget
            (:func:`whole_or_large_tiles`).
    """

    tile: int | Literal["auto"] = 256
    overlap: int | None = None
    context: int | None = None
    memory: str | None = None
    batch: int = 1
    precision: str = "auto"
    device: str = "auto"
    threads: int | Literal["auto"] | None = None
    compile: bool = False
    backend: str = "torch"
    whole_if_fits: bool = False

    @classmethod
    def from_options(cls, opts: Any) -> RunOptions:
        """The run options a step's options model holds (fields it lacks keep their defaults here).

        ``whole_if_fits`` is set when the step has a ``tile`` option the user did not set.
        """
        have = getattr(type(opts), "model_fields", {})
        kw = {k: getattr(opts, k) for k in cls.__dataclass_fields__ if k in have}
        kw["whole_if_fits"] = "tile" in have and "tile" not in opts.model_fields_set
        return cls(**kw)


@dataclass
class RunState:
    """What a step keeps between images for :func:`run_model`: the ``tile: auto`` choice per device and
    dtype, the measured thread count, the compiled forward, the ``backend: auto`` choice and the forward of a
    named backend."""

    auto_tile: dict[tuple[str, str], tuple[int, str]] = field(default_factory=dict)
    threads: tuple[int, str] | None = None
    threads_noted: bool = False
    compiled: dict | None = None
    backend: Any = None  # restore.backends.Choice once ``backend: auto`` chose
    backend_forward: dict = field(default_factory=dict)  # (backend, device) -> (forward, dtype)


def wide_overlap(model: RestorationModel, tile: int, overlap: int) -> int:
    """The overlap for tiles of a global-attention model: at least 1/8 of the tile (rounded up to the size
    multiple), so neighbouring tiles' global statistics blend over a wide band."""
    mult = max(1, model.multiple_of)
    return max(overlap, -(-(tile // 8) // mult) * mult)


def whole_or_large_tiles(model: RestorationModel, shape, device, dtype, overlap: int, memory: str | None,
                         notes: list[str]) -> tuple[int, int]:
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


def device_and_dtype(model: RestorationModel, run: RunOptions, ctx: Context | None = None) -> tuple[torch.device, torch.dtype]:
    """Where and in which precision ``model`` runs: the context's device (``restore run --device``) or
    ``run.device``, and :func:`restore.tiling.resolve_precision` with the model's descriptor flags.

    Raises:
        RestoreError: a device this machine lacks; PrecisionError: a precision the model or device cannot run.
    """
    from ..tiling import resolve_device, resolve_precision

    device = resolve_device((ctx.device if ctx is not None else None) or run.device)
    dtype = resolve_precision(run.precision, device, model.supports_half, model.supports_bfloat16,
                              cpu_bf16_ok=model.info.cpu_bf16_ok)
    return device, dtype


def tile_spec(model: RestorationModel, shape, run: RunOptions, device, dtype, ctx: Context | None = None,
              state: RunState | None = None):
    """The :class:`~restore.tiling.TileSpec` for an input of ``shape`` (``(H, W, ...)``).

    In order: the architecture's overlap and context unless given; the whole image for an architecture
    that discourages tiling when ``run.whole_if_fits`` and it fits the memory budget (else large tiles with
    a wide overlap); ``tile: auto`` from the memory curve; tiles of exactly the native size for a
    fixed-size network (no context); an overlap clamped below half the tile; the architecture's internal
    padding size as the tile alignment.
    """
    from ..tiling import TileSpec

    ctx = ctx if ctx is not None else Context()
    state = state if state is not None else RunState()
    m = model
    overlap = run.overlap if run.overlap is not None else m.info.overlap
    tile = run.tile
    context = run.context if run.context is not None else m.info.context
    if tile and run.whole_if_fits and m.tiling_discouraged:
        # global attention / pooling: tiles change the result; whole image unless it does not fit in memory
        with warmup(ctx):  # the memory curve is measured once per machine
            tile, overlap = whole_or_large_tiles(m, shape, device, dtype, overlap, run.memory, ctx.notes)
    if tile == "auto" and not m.fixed_size:
        with warmup(ctx):
            tile = _auto_tile(m, run, device, dtype, context, ctx, state)
    if m.fixed_size:  # the network runs only at its native size: tiles of exactly that size
        tile = m.fixed_size
        overlap = min(overlap, min(tile) // 2 - 1)
    elif tile and overlap * 2 >= tile:
        overlap = max(0, tile // 2 - 1)
    return TileSpec(tile=tile, overlap=overlap, batch=run.batch, context=0 if m.fixed_size else context, align=m.tile_align)


def run_model(
    model: RestorationModel,
    pixels: np.ndarray,
    run: RunOptions,
    *,
    ctx: Context | None = None,
    state: RunState | None = None,
    layout: Literal["hwc", "chw"] = "hwc",
    label: str | None = None,
) -> np.ndarray:
    """Run ``model`` over ``pixels`` as ``run`` says: the model step, the network merge and ``restore bench``.

    Device and precision (:func:`device_and_dtype`), tiles (:func:`tile_spec`), the forward (the model's
    own, with its side inputs; compiled when ``run.compile`` and the model allows it), the image's channels
    fitted to the model's (grey to RGB and back, or channel by channel for a one-channel model), CPU
    threads (set for the run, restored after), then :func:`restore.tiling.run_tiled`.

    Args:
        model: A loaded :class:`~restore.models.RestorationModel` (:meth:`prepare` called where it has
            side inputs).
        pixels: float32 ``(H, W, C)`` (``layout="hwc"``) or ``(C, H, W)``, in the model's value encoding.
        run: :class:`RunOptions`.
        ctx: Device override, progress, notes (tile choices, out-of-memory retries, threads) and warm-up
            marks; None: a fresh :class:`~restore.pipeline.base.Context`.
        state: Caches kept across images (a step keeps one); None: nothing kept.
        layout: Of ``pixels`` and of the result.
        label: The model's name in error messages (default: ``model.name``).

    Returns:
        float32 output at the model's scale, same layout, the model's output channels (the input's for a
        grey image through an RGB model or a one-channel model run per channel).

    Raises:
        RestoreError: a device this machine lacks, a precision it cannot run, channels the model cannot
            take.
        MemoryError / RuntimeError: out of memory even at the smallest tile.
    """
    import torch

    ctx = ctx if ctx is not None else Context()
    state = state if state is not None else RunState()
    m = model
    axis = 2 if layout == "hwc" else 0
    hw = pixels.shape[:2] if layout == "hwc" else pixels.shape[1:]
    device, dtype = device_and_dtype(m, run, ctx)
    spec = tile_spec(m, hw, run, device, dtype, ctx, state)
    c = pixels.shape[axis]
    cin = m.tile_input_channels
    eager_forward = m.forward_for(device)
    if cin == c:
        groups = [pixels]
    elif cin == 3 and c == 1:
        groups = [np.repeat(pixels, 3, axis=axis)]
    elif cin == 1:
        groups = [pixels[:, :, i : i + 1] if layout == "hwc" else pixels[i : i + 1] for i in range(c)]
    else:
        raise RestoreError(f"model {label or m.name!r} takes {cin} channels, image has {c}")
    threads_before = torch.get_num_threads()
    if device.type == "cpu" and run.threads is not None:
        # timed eagerly: a compiled forward would compile once more for the timing tile's shape
        torch.set_num_threads(_threads(m, run, eager_forward, cin, dtype, ctx, state))
    try:
        whole = not spec.tile or (isinstance(spec.tile, int) and max(hw) <= spec.tile)
        forward, dtype, per_shape = _backend_forward(m, run, device, dtype, eager_forward, state, ctx, whole)
        if per_shape and not spec.uniform:  # one input shape: one compiled graph / export and session per run
            spec = replace(spec, uniform=True)
        outs = _run_groups(m, forward, groups, spec, device, dtype, ctx, layout)
    finally:
        torch.set_num_threads(threads_before)
    if device.type == "cuda":
        torch.cuda.empty_cache()
    out = np.concatenate(outs, axis=axis) if cin == 1 else outs[0]
    if cin == 3 and c == 1:
        out = out.mean(axis=axis, keepdims=True)
    return out


def _backend_forward(m, run: RunOptions, device, dtype, eager: Callable, state: RunState, ctx: Context,
                     whole: bool = False):
    """The forward, compute dtype and per-shape flag of ``run.backend`` (:mod:`restore.backends`): ``(forward,
    dtype, per_shape)``, ``per_shape`` True for a path that builds per input shape (a compiled graph, an ONNX
    export and session: :data:`restore.backends.PER_SHAPE`).  ``auto`` is measured once per machine and model
    (cached), its choice noted once per state.  With ``whole`` (the image runs as one tile, a shape of its own)
    ``auto`` uses its fastest PyTorch path instead of a separate runtime."""
    import torch

    from ..backends import PER_SHAPE, TORCH_PATHS, backend_for, build_forward, eligible

    def compiled(module):
        return _compiled_forward(module, state, ctx)

    name = run.backend
    if name == "auto" and whole and state.backend is None and device.type == "cpu" and all(
            eligible(m, b, device, run.precision, run.compile) for b in TORCH_PATHS[1:]):
        # an image run whole uses a PyTorch path, and fp32 torch is the only one allowed: nothing to measure
        note = "backend auto: torch for images run whole (no other PyTorch path allowed here)"
        if note not in ctx.notes:
            ctx.notes.append(note)
        return eager, torch.float32, False
    if name == "auto":
        if state.backend is None:
            with warmup(ctx):  # timed once per machine and model, cached
                state.backend = backend_for(m, device, run.precision, compiled, compile=run.compile)
            ctx.notes.append(state.backend.reason)
        name = state.backend.backend
        if whole and name not in TORCH_PATHS:
            name = state.backend.fallback
            note = f"backend auto: {name} for images run whole (each a new shape for {state.backend.backend})"
            if note not in ctx.notes:
                ctx.notes.append(note)
        if name == "torch":  # on the CPU auto's torch is fp32 (bf16 is its own candidate, torch-bf16)
            return eager, (dtype if device.type != "cpu" else torch.float32), False
    elif name == "torch":
        if run.compile:
            return m.forward_for(device, network=_compiled_forward(m.module.to(device), state, ctx)), dtype, True
        return eager, dtype, False
    key = (name, str(device))
    if key not in state.backend_forward:  # the network's forward, built once per run (export, session, kernels)
        state.backend_forward[key] = build_forward(m, name, device, compiled)
    network, dtype = state.backend_forward[key]
    return m.forward_for(device, network=network), dtype, name in PER_SHAPE  # this image's side input in front


def _run_groups(m, forward: Callable, groups: list[np.ndarray], spec, device, dtype, ctx: Context, layout: str) -> list[np.ndarray]:
    from ..tiling import run_tiled

    return [
        run_tiled(
            forward, g, scale=m.scale, out_channels=m.output_channels, spec=spec,
            multiple_of=m.multiple_of, min_size=m.min_size, device=device, dtype=dtype,
            progress=ctx.tile_progress, layout=layout,
            on_oom=lambda a, b: ctx.notes.append(f"out of memory at tile {a}: retried with tile {b}"),
        )
        for g in groups
    ]


def _threads(m, run: RunOptions, forward: Callable, cin: int, dtype, ctx: Context, state: RunState) -> int:
    """``threads``: the set count, or the measured best (cached; noted once per state)."""
    import torch

    if run.threads != "auto":
        return int(run.threads)
    if state.threads is None:
        from ..threads import threads_for

        side = m.fixed_size or (max(64, -(-max(m.min_size, 1) // max(m.multiple_of, 1)) * max(m.multiple_of, 1)),) * 2
        sample = torch.rand(1, cin, *side, generator=torch.Generator().manual_seed(0))
        autocast = dtype in (torch.float16, torch.bfloat16)

        def once():
            with torch.inference_mode(), torch.autocast("cpu", dtype=dtype, enabled=autocast):
                forward(sample)

        with warmup(ctx):  # timed once per machine and model, cached
            state.threads = threads_for(f"{m.arch}/{m.shape_key}/{str(dtype).replace('torch.', '')}", once)
    n, note = state.threads
    if not state.threads_noted:
        ctx.notes.append(note)
        state.threads_noted = True
    return n


def _auto_tile(m, run: RunOptions, device, dtype, context: int, ctx: Context, state: RunState) -> int:
    """``tile: auto``: the largest tile the memory budget allows by the model's measured curve."""
    from ..memory import curve_for, default_budget, parse_bytes, tile_for_budget

    key = (str(device), str(dtype))
    if key not in state.auto_tile:
        budget = parse_bytes(run.memory) if run.memory else default_budget(device)
        curve = curve_for(m, device, dtype)
        if curve is None:
            state.auto_tile[key] = (256, "tile auto: peak memory cannot be measured here; tile 256")
        else:
            t = tile_for_budget(curve, budget, context=context, batch=run.batch, multiple_of=max(1, m.multiple_of))
            state.auto_tile[key] = (t, f"tile auto: {t} px for a {budget / 2**30:.2f} GiB budget (memory curve {curve.describe()})")
        ctx.notes.append(state.auto_tile[key][1])
    return state.auto_tile[key][0]


def _compiled_forward(module, state: RunState, ctx: Context) -> Callable:
    """``torch.compile(module)`` (static shapes; kernels cached under the user cache), falling
    back to eager - with a note - where compilation fails (no C++ compiler, an unsupported op)."""
    import os

    import torch

    if state.compiled is None:
        from ..cache import cache_dir

        cache = cache_dir("inductor")
        try:  # torch fills the variable with its /tmp default once it has looked; only a user's own choice wins
            from torch._inductor.runtime.cache_dir_utils import default_cache_dir

            default = os.path.abspath(default_cache_dir())
        except Exception:  # pragma: no cover - other torch versions
            default = None
        if os.environ.get("TORCHINDUCTOR_CACHE_DIR") in (None, default):
            os.environ["TORCHINDUCTOR_CACHE_DIR"] = str(cache)
        state.compiled = {"fn": torch.compile(module, dynamic=False), "failed": None, "seen": set()}
    compiled = state.compiled

    def forward(x):
        if compiled["failed"] is None:
            try:
                shape = tuple(x.shape)
                if shape in compiled["seen"]:
                    return compiled["fn"](x)
                with warmup(ctx):  # compiling for a new tile shape: tens of seconds on a CPU, once (kernels cached)
                    y = compiled["fn"](x)
                compiled["seen"].add(shape)
                return y
            except (MemoryError, torch.cuda.OutOfMemoryError):
                raise  # the tiler halves the tile
            except Exception as e:  # compilation errors surface at the first call
                compiled["failed"] = f"torch.compile failed ({type(e).__name__}): ran eagerly"
                ctx.notes.append(compiled["failed"])
        return module(x)

    return forward
