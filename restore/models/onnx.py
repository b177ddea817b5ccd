"""ONNX export of a loaded model, and forwards that run the export in ONNX Runtime or OpenVINO (issue 21).

:func:`export_onnx` writes the network (``RestorationModel.module``: the official forward signature, with
the fused attention of :mod:`restore.models.fused_attention` where the architecture declares it) as an ONNX
graph for one fixed input shape ``(batch, input_channels, H, W)``.  The graph is fixed-size because the
architectures pad, split windows and size their attention from the input's shape in Python, so a trace
records one shape; the tiler feeds these runtimes tiles of one shape (border tiles are reflect-padded to it, and
context windows shifted inside the image instead of clipped: :attr:`restore.tiling.TileSpec.uniform`), so one
export serves a whole run.  Models with a side input (a VGG19
hypercolumn, a noise-sigma map) are exported with the network's full input: the side channels are
concatenated after the image's, as the network takes them.

:class:`OnnxForward` is a forward for the tiler (``torch.Tensor (B, C, h, w) -> (B, C_out, h*s, w*s)``)
that exports once per input shape and runs the graph in ONNX Runtime (``CPUExecutionProvider``) or OpenVINO
(``CPU`` device, ``INFERENCE_PRECISION_HINT=f32``: OpenVINO otherwise runs bf16 on CPUs with AMX or
AVX512-BF16, which would bypass the project's measured bf16 verdicts).  ONNX Runtime is a dependency, OpenVINO
the optional extra ``[openvino]``; :func:`runtime_missing` says what is absent.

The exporter is torch's TorchScript-based ``torch.onnx.export(dynamo=False)`` (seconds for DAT-light);
where a torch version no longer has it, the ``torch.export``-based exporter (``dynamo=True``; needs the
``onnxscript`` package, about ten times slower to export) is used.
"""

from __future__ import annotations

import functools
import io
import tempfile
import warnings
from pathlib import Path
from typing import TYPE_CHECKING, BinaryIO, Callable

import numpy as np
import torch

from ..errors import RestoreError

if TYPE_CHECKING:  # pragma: no cover
    from .model import RestorationModel

__all__ = ["OPSET", "RUNTIMES", "OnnxForward", "cached_export", "export_onnx", "onnx_session", "runtime_missing",
           "weights_digest"]

#: ONNX opset of the exports (17: LayerNormalization as one op; ONNX Runtime and OpenVINO both run it).
OPSET = 17

#: The runtimes :class:`OnnxForward` can use, with the module each needs and how to install it (ONNX Runtime
#: is a dependency of restore; OpenVINO the ``[openvino]`` extra).
RUNTIMES = {"onnxruntime": ("onnxruntime", "pip install onnxruntime"),
            "openvino": ("openvino", 'pip install "restore-imaging[openvino]"')}


def runtime_missing(runtime: str) -> str | None:
    """None when ``runtime`` (a key of :data:`RUNTIMES`) can be imported, else a one-line reason."""
    import importlib.util

    if runtime not in RUNTIMES:
        return f"unknown runtime {runtime!r}; use one of {', '.join(RUNTIMES)}"
    module, how = RUNTIMES[runtime]
    if importlib.util.find_spec(module) is None:
        return f"{runtime} is not installed ({how})"
    return None


def _check_size(model: RestorationModel, size: tuple[int, int]) -> None:
    h, w = size
    fixed = model.fixed_size
    if fixed is not None and (h, w) != tuple(fixed):
        raise RestoreError(f"model {model.name!r} runs only at {fixed[1]}x{fixed[0]}; export it at that size")
    if min(h, w) < max(1, model.min_size):
        raise RestoreError(f"model {model.name!r} needs inputs of at least {model.min_size} px, not {w}x{h}")


def export_onnx(model: RestorationModel, dest: str | Path | BinaryIO, size: tuple[int, int], *, batch: int = 1,
                opset: int = OPSET) -> None:
    """Write ``model``'s network as an ONNX graph for inputs of one shape.

    Args:
        model: A loaded :class:`~restore.models.RestorationModel` (its module, eval mode, on any device: it
            is traced on the CPU and left there).
        dest: A path (written atomically) or a writable binary file object.
        size: ``(H, W)`` of the input in pixels (packed pixels for a CFA model; the native size of a
            fixed-size model).
        batch: Batch size of the graph's input.
        opset: ONNX opset version.

    The graph has one input ``input``, float32 ``(batch, model.input_channels, H, W)`` in the model's input
    encoding (side-input channels after the image's), and one output ``output``, float32
    ``(batch, model.output_channels, H*scale, W*scale)``.

    Raises:
        RestoreError: (one line) a size the model cannot take, or the exporter failed (the message names
            the first line of torch's error).
    """
    _check_size(model, size)
    module = model.module.to("cpu").eval()
    x = torch.rand(batch, model.input_channels, *size, generator=torch.Generator().manual_seed(0))
    if isinstance(dest, (str, Path)):
        from ..io.atomic import atomic_path

        with atomic_path(Path(dest)) as tmp:
            with open(tmp, "wb") as f:
                _export(module, x, f, opset, model.name)
        return
    _export(module, x, dest, opset, model.name)


def _export(module: torch.nn.Module, x: torch.Tensor, dest: BinaryIO, opset: int, name: str) -> None:
    kw = dict(input_names=["input"], output_names=["output"], opset_version=opset)
    with torch.no_grad(), warnings.catch_warnings():
        warnings.simplefilter("ignore")  # tracer warnings about Python-side shape arithmetic: the graph is fixed-size by design
        try:
            torch.onnx.export(module, (x,), dest, dynamo=False, do_constant_folding=True, **kw)
            return
        except Exception as legacy:  # a torch without the TorchScript exporter, or an op it lacks
            first = legacy
        try:
            prog = torch.onnx.export(module, (x,), dynamo=True, external_data=False, **kw)
            with tempfile.TemporaryDirectory() as d:
                p = Path(d) / "model.onnx"
                prog.save(str(p))
                dest.write(p.read_bytes())
        except Exception as e:
            msg = (str(first).strip().splitlines() or [type(first).__name__])[0]
            raise RestoreError(f"model {name!r}: ONNX export failed ({type(first).__name__}: {msg[:200]}; "
                               f"the torch.export exporter: {type(e).__name__})") from None


def onnx_session(onnx_bytes: bytes, runtime: str, threads: int) -> Callable[[np.ndarray], np.ndarray]:
    """A function running the ONNX graph ``onnx_bytes`` on the CPU: float32 array in, float32 array out.

    Args:
        onnx_bytes: The serialised graph (:func:`export_onnx`), one input and one output.
        runtime: ``"onnxruntime"`` or ``"openvino"``.
        threads: Intra-op threads the runtime uses.

    Raises:
        RestoreError: the runtime is not installed, or it cannot load the graph.
    """
    missing = runtime_missing(runtime)
    if missing:
        raise RestoreError(missing)
    try:
        if runtime == "onnxruntime":
            import onnxruntime as ort

            so = ort.SessionOptions()
            so.intra_op_num_threads = max(1, threads)
            so.inter_op_num_threads = 1
            so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
            # no pre-planned buffer pattern: the RAW denoiser's 1104-px tile peaks at 766 MiB instead of 1417 at
            # the same speed (2.92 vs 2.89 s; benchmarks/RESULTS.md, "ONNX runtimes for the RAW denoiser")
            so.enable_mem_pattern = False
            so.log_severity_level = 3
            sess = ort.InferenceSession(onnx_bytes, so, providers=["CPUExecutionProvider"])
            name = sess.get_inputs()[0].name

            def run(x: np.ndarray) -> np.ndarray:
                return sess.run(None, {name: x})[0]

            return run
        import openvino as ov

        core = ov.Core()
        with tempfile.TemporaryDirectory() as d:  # OpenVINO reads ONNX from a file
            p = Path(d) / "model.onnx"
            p.write_bytes(onnx_bytes)
            compiled = core.compile_model(core.read_model(str(p)), "CPU", {
                "INFERENCE_PRECISION_HINT": "f32", "INFERENCE_NUM_THREADS": max(1, threads), "PERFORMANCE_HINT": "LATENCY"})
        request = compiled.create_infer_request()

        def run(x: np.ndarray) -> np.ndarray:
            request.infer({0: x})
            return np.array(request.get_output_tensor(0).data, copy=True)

        return run
    except RestoreError:
        raise
    except Exception as e:
        first = (str(e).strip().splitlines() or [type(e).__name__])[0][:200]
        raise RestoreError(f"{runtime} cannot run the exported graph: {first}") from None


def weights_digest(model: RestorationModel) -> str:
    """sha256 (hex) of the network's state dict: names, dtypes, shapes and values (the export's identity)."""
    import hashlib

    h = hashlib.sha256()
    for name, t in sorted(model.module.state_dict().items()):
        t = t.detach().to("cpu").contiguous().reshape(-1)
        h.update(f"{name}:{t.dtype}:{tuple(t.shape)};".encode())
        h.update(t.view(torch.uint8).numpy().tobytes() if t.numel() else b"")
    return h.hexdigest()


@functools.lru_cache(maxsize=1)
def code_digest() -> str:
    """sha256 (16 hex digits) of the code an export traces beyond the checkpoint (the architectures, the fused
    attention kernels, mixed precision); also part of ``backend: auto``'s cache key, since the same code sets the
    speed of the ``torch`` paths.  Read once per process."""
    import hashlib

    here = Path(__file__).resolve().parent
    h = hashlib.sha256()
    for f in sorted([here / "fused_attention.py", here / "mixed_precision.py", *(here / "archs").glob("*.py")]):
        try:
            h.update(f.name.encode() + f.read_bytes())
        except OSError:
            pass
    return h.hexdigest()[:16]


def cached_export(model: RestorationModel, size: tuple[int, int], batch: int = 1) -> bytes:
    """The ONNX export of ``model`` for ``(batch, C, *size)`` inputs, from the user cache when an earlier run
    made it (``~/.cache/restore/onnx/``: keyed by the weights' digest, the shape, the opset, the torch version
    and a digest of the architecture code, so a changed checkpoint or code exports again); else exported and cached (a
    cache that cannot be written only means exporting again next time).

    Raises:
        RestoreError: as :func:`export_onnx`.
    """
    import hashlib

    from ..cache import cache_dir

    digest = model.__dict__.get("_restore_weights_digest")
    if digest is None:
        digest = model.__dict__["_restore_weights_digest"] = weights_digest(model)
    ident = (f"{digest}/{batch}x{model.input_channels}x{size[0]}x{size[1]}/opset{OPSET}/torch-{torch.__version__}/"
             f"code-{code_digest()}")
    path = cache_dir("onnx", f"{model.arch}-{hashlib.sha256(ident.encode()).hexdigest()[:24]}.onnx")
    try:
        return path.read_bytes()
    except OSError:
        pass
    buf = io.BytesIO()
    export_onnx(model, buf, size, batch=batch)
    data = buf.getvalue()
    try:
        from ..io.atomic import atomic_path

        path.parent.mkdir(parents=True, exist_ok=True)
        with atomic_path(path) as tmp:
            Path(tmp).write_bytes(data)
    except OSError:
        pass
    return data


class OnnxForward:
    """A tiler forward that runs a model's ONNX export in ONNX Runtime or OpenVINO on the CPU.

    Calling it with a float32 ``(B, C, h, w)`` tensor (``C`` = ``model.input_channels``) exports the network
    for that shape the first time (:func:`cached_export`: once per machine, weights and shape) and returns the
    float32 ``(B, C_out, h*s, w*s)`` output as a CPU tensor.  It runs the network alone: a model's side input
    (a noise-sigma map, a hypercolumn) is computed per image in PyTorch and concatenated in front of it
    (:meth:`RestorationModel.forward_for(device, network=...) <restore.models.RestorationModel.forward_for>`),
    so the export never holds one image's side input.

    Args:
        model: The loaded model.
        runtime: ``"onnxruntime"`` or ``"openvino"``.
        threads: Intra-op threads of the runtime (default: torch's current count).

    Raises:
        RestoreError: the runtime is missing.
    """

    def __init__(self, model: RestorationModel, runtime: str, threads: int | None = None):
        missing = runtime_missing(runtime)
        if missing:
            raise RestoreError(missing)
        self.model, self.runtime = model, runtime
        self.threads = threads if threads is not None else torch.get_num_threads()
        self._runs: dict[tuple[int, ...], Callable[[np.ndarray], np.ndarray]] = {}

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        key = tuple(x.shape)
        run = self._runs.get(key)
        if run is None:
            graph = cached_export(self.model, (key[2], key[3]), key[0])
            run = self._runs[key] = onnx_session(graph, self.runtime, self.threads)
        y = run(np.ascontiguousarray(x.detach().to("cpu", torch.float32).numpy()))
        return torch.from_numpy(np.asarray(y, dtype=np.float32))
