"""``restore bench``: whole-image vs tiled vs a Real-ESRGAN-style tile loop, same model and image.

Each method runs in a fresh process so its peak RSS is its own.  Reported per
method: seconds (best of ``repeat``), input megapixels per second, peak RSS,
and for tiled methods the ratio to whole-image time next to the overlap factor
``((T + 2*overlap) / T)^2`` - the extra pixels a tiled run computes.

The Real-ESRGAN-style loop is written here as the reference peers use
(``RealESRGANer.tile_process``): the whole image is moved to the device, cut
into tiles of T with ``tile_pad`` = 10 context pixels, each output tile cropped
and pasted with no blending.
"""

from __future__ import annotations

import json
import math
import resource
import subprocess
import sys
import time

import numpy as np
import torch

__all__ = ["PEER", "bench_backend", "bench_method", "esrgan_tile_loop", "machine_rates", "run_backend_bench", "run_bench",
           "set5_psnr", "synthetic_image"]


def esrgan_tile_loop(forward, image: torch.Tensor, scale: int, tile: int, tile_pad: int = 10) -> torch.Tensor:
    """Real-ESRGAN's tile loop (reference for comparison): hard paste, ``tile_pad`` context, no blending.

    Args:
        forward: model ``(1, C, h, w) -> (1, C, h*scale, w*scale)``.
        image: ``(1, C, H, W)`` tensor already on the device.
        scale, tile, tile_pad: as in ``RealESRGANer``.

    Returns:
        ``(1, C, H*scale, W*scale)`` tensor.
    """
    _, c, h, w = image.shape
    out = image.new_zeros((1, c, h * scale, w * scale))
    for ty in range(math.ceil(h / tile)):
        for tx in range(math.ceil(w / tile)):
            x0, y0 = tx * tile, ty * tile
            x1, y1 = min(x0 + tile, w), min(y0 + tile, h)
            px0, py0, px1, py1 = max(x0 - tile_pad, 0), max(y0 - tile_pad, 0), min(x1 + tile_pad, w), min(y1 + tile_pad, h)
            o = forward(image[:, :, py0:py1, px0:px1])
            oy0, ox0 = (y0 - py0) * scale, (x0 - px0) * scale
            out[:, :, y0 * scale : y1 * scale, x0 * scale : x1 * scale] = o[:, :, oy0 : oy0 + (y1 - y0) * scale, ox0 : ox0 + (x1 - x0) * scale]
    return out


def synthetic_image(width: int, height: int, seed: int = 0, channels: int = 3) -> np.ndarray:
    """Smooth colour waves plus Gaussian noise (sigma 0.05): float32 ``(H, W, channels)`` in [0, 1].

    Built row band by row band in float32, so the only large allocation is the
    image itself (the peak-RSS figures then measure the inference, not this).
    Channels past the third repeat the three waves (the packed Bayer planes of a CFA model).
    """
    rng = np.random.default_rng(seed)
    img = np.empty((height, width, channels), np.float32)
    x = np.arange(width, dtype=np.float32)[None, :]
    for y0 in range(0, height, 256):
        y = np.arange(y0, min(height, y0 + 256), dtype=np.float32)[:, None]
        band = img[y0 : y0 + y.shape[0]]
        for c in range(channels):
            band[..., c] = (0.5 + 0.3 * np.sin(x / 9), 0.5 + 0.3 * np.cos(y / 7), 0.5 + 0.2 * np.sin((x + y) / 13))[c % 3]
        band += 0.05 * rng.standard_normal(band.shape, dtype=np.float32)
        np.clip(band, 0, 1, out=band)
    return img


#: The noise profile a benchmark binds to models whose side input is computed from the image's noise profile
#: (the RAW denoiser's sigma map): ISO 3200 of :data:`restore.noise.ISO_LEVELS`.
BENCH_ISO = 3200


def bench_method(model_name: str, method: str, width: int, height: int, tile: int, overlap: int, repeat: int, precision: str, device: str,
                 backend: str = "torch") -> dict:
    """Time one method in this process with autograd off (restored after); returns seconds, Mpx/s and peak RSS (MiB).

    ``whole`` and ``tiled`` run exactly as the model step would with ``tile: 0`` or the given ``tile`` and
    ``overlap`` set explicitly (:func:`restore.pipeline.model_run.run_model`: same device and precision
    choice, context, alignment, overlap clamp); ``esrgan-loop`` runs :func:`esrgan_tile_loop` on the same
    device and precision.  ``backend`` is the step's ``backend:`` for ``whole`` and ``tiled``
    (:mod:`restore.backends`; with ``auto`` the row's ``backend_note`` says what was chosen); the best of
    ``repeat`` runs is reported, so a runtime's export and session set-up (the first run) are not in it.
    Torch's thread count is left as it is for every method.
    """
    from .models import load_model

    with torch.no_grad():  # never left disabled for the caller (tests call this in-process)
        return _bench_method(load_model(model_name), method, width, height, tile, overlap, repeat, precision, device, backend)


def _bench_method(m, method: str, width: int, height: int, tile: int, overlap: int, repeat: int, precision: str, device: str,
                  backend: str = "torch") -> dict:
    from .pipeline.base import Context
    from .pipeline.model_run import RunOptions, RunState, device_and_dtype, run_model

    run = RunOptions(tile=0 if method == "whole" else tile, overlap=overlap, precision=precision, device=device,
                     backend=backend)
    ctx, state = Context(), RunState()  # one state across the repeats, as one pipeline run keeps across files
    from .image import SRGB, Image, Metadata
    from .noise import ISO_LEVELS, NoiseProfile

    img = synthetic_image(width, height, channels=m.tile_input_channels)
    a, b = ISO_LEVELS[BENCH_ISO]  # side inputs computed from the image (noise profile / level), as the model step does
    m.bind_image(Image(img, SRGB, Metadata(noise_profile=NoiseProfile(a=a, b=b, source="pipeline"))), img, {})
    dev, dtype = device_and_dtype(m, run)
    forward = m.forward_for(dev)
    best = float("inf")
    for _ in range(repeat):
        if dev.type == "cuda":
            torch.cuda.synchronize()
        t0 = time.perf_counter()
        if method in ("whole", "tiled"):
            run_model(m, img, run, ctx=ctx, state=state)
        else:
            t = torch.from_numpy(img.transpose(2, 0, 1).copy())[None].to(dev)
            with torch.inference_mode(), torch.autocast(dev.type, dtype=dtype, enabled=dtype != torch.float32):
                esrgan_tile_loop(forward, t, m.scale, tile).float().cpu()
        if dev.type == "cuda":
            torch.cuda.synchronize()
        best = min(best, time.perf_counter() - t0)
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    res = {"method": method, "seconds": best, "mpx_per_s": width * height / 1e6 / best, "peak_rss_mib": rss, "dtype": str(dtype).replace("torch.", "")}
    if method in ("whole", "tiled"):
        res["backend"] = backend
        notes = [n for n in ctx.notes if n.startswith("backend auto")]
        if notes:
            res["backend_note"] = "; ".join(dict.fromkeys(notes))
    if dev.type == "cuda":
        res["peak_gpu_mib"] = torch.cuda.max_memory_allocated() / 2**20
        res["device"] = torch.cuda.get_device_name()
    return res


def run_bench(model_name: str, width: int, height: int, tile: int = 128, overlap: int = 16, repeat: int = 2,
              precision: str = "fp32", device: str = "cpu", methods=("whole", "tiled", "esrgan-loop"),
              backend: str = "torch") -> list[dict]:
    """Run each method in a fresh Python process and collect the results (see :func:`bench_method`)."""
    out = []
    for meth in methods:
        code = ("import json,sys; from restore.bench import bench_method; "
                f"print(json.dumps(bench_method({model_name!r}, {meth!r}, {width}, {height}, {tile}, {overlap}, {repeat}, {precision!r}, {device!r}, "
                f"{backend!r})))")
        out.append({"method": meth, **_fresh(code)})
    whole = next((r for r in out if r.get("method") == "whole" and "seconds" in r), None)
    factor = ((tile + 2 * overlap) / tile) ** 2
    for r in out:
        if whole and "seconds" in r and r["method"] != "whole":
            r["ratio_to_whole"] = r["seconds"] / whole["seconds"]
            r["overlap_factor"] = factor if r["method"] == "tiled" else ((tile + 20) / tile) ** 2
    return out


# ------------------------------------------------------------------------------------------ backends (issue 21)

#: The peer every backend is compared with: spandrel's own model (official forwards, no fused attention), fp32.
PEER = "spandrel"


def _peer_model(model_name: str):
    """spandrel's descriptor for ``model_name`` as a script gets it: ``ModelLoader().load_from_state_dict``,
    official forwards (this process must have ``RESTORE_FUSED_ATTENTION=0``)."""
    import spandrel

    from .models import resolve
    from .models.loader import load_state_dict

    return spandrel.ModelLoader().load_from_state_dict(load_state_dict(resolve(model_name)[1])[0]).eval()


def bench_backend(model_name: str, backend: str, tile: int, repeat: int, out_npy: str | None = None) -> dict:
    """Time one backend (or :data:`PEER`) on one seeded ``tile`` x ``tile`` input in this process.

    One warm-up call (compiles, exports, builds kernels), then ``repeat`` timed calls; returns
    ``{"backend", "seconds": best, "times": [...]}`` and writes the float32 output to ``out_npy``.
    """
    from .backends import _call, build_forward
    from .models import load_model

    dev = torch.device("cpu")
    if backend == PEER:
        desc = _peer_model(model_name)
        channels, dtype = int(desc.input_channels), torch.float32

        def forward(x):
            return desc(x)
    else:
        m = load_model(model_name)
        forward, dtype = build_forward(m, backend, dev)
        channels = m.input_channels  # the network alone (side-input channels random, as backends.measure)
    x = torch.rand(1, channels, tile, tile, generator=torch.Generator().manual_seed(0))
    y = _call(forward, x, dtype)
    times = []
    for _ in range(max(1, repeat)):
        t0 = time.perf_counter()
        _call(forward, x, dtype)
        times.append(time.perf_counter() - t0)
    if out_npy:
        np.save(out_npy, y.numpy())
    return {"backend": backend, "seconds": min(times), "times": times}


def machine_rates(model_name: str, tile: int) -> dict:
    """This machine's fp32 (and, where native, bf16) GEMM rate in GFLOP/s, the model's FLOPs per ``tile``
    input, CPU name and flags that matter, threads and versions (for :func:`run_backend_bench`)."""
    from .backends import gemm_rate, model_flops
    from .models import load_model
    from .threads import _cpu_name, _cpuinfo, cpu_flags
    from .tiling import cpu_has_fast_bf16

    info = _cpuinfo()
    out = {"cpu": _cpu_name(), "family": info.get("cpu family"), "model": info.get("model"), "flags": cpu_flags(),
           "threads": torch.get_num_threads(), "torch": torch.__version__,
           "gemm_fp32_gflops": gemm_rate(torch.float32)}
    if cpu_has_fast_bf16():
        out["gemm_bf16_gflops"] = gemm_rate(torch.bfloat16)
    m = load_model(model_name)
    out["flops_per_tile"] = model_flops(m, (tile, tile))
    for mod in ("onnxruntime", "openvino"):
        try:
            out[mod] = __import__(mod).__version__
        except ImportError:
            pass
    return out


def set5_psnr(model_name: str, backend: str, set5: str, tile: int) -> dict:
    """Mean PSNR-Y (crop = scale) of ``backend`` on Set5 (``<set5>/LR_bicubic/X<s>`` against ``<set5>/HR``),
    tiled at ``tile`` with the model step's defaults; :data:`PEER` runs spandrel's model on each whole image."""
    from pathlib import Path

    from .io import read
    from .metrics import psnr
    from .models import load_model
    from .pipeline.model_run import RunOptions, run_model

    root = Path(set5)
    if backend == PEER:
        desc = _peer_model(model_name)
        scale = int(desc.scale)

        def up(lr):
            with torch.inference_mode():
                return desc(torch.from_numpy(lr.transpose(2, 0, 1).copy())[None])[0].permute(1, 2, 0).numpy()
    else:
        m = load_model(model_name)
        scale = m.scale

        def up(lr):
            return run_model(m, lr, RunOptions(tile=tile, backend=backend, precision="fp32"))
    vals = []
    for p in sorted((root / "LR_bicubic" / f"X{scale}").glob("*.png")):
        stem = p.stem[: -len(f"x{scale}")] if p.stem.endswith(f"x{scale}") else p.stem
        sr = np.clip(up(read(p).color), 0, 1)
        hr = read(root / "HR" / f"{stem}.png").color[: sr.shape[0], : sr.shape[1]]
        vals.append(psnr(sr, hr, crop_border=scale))
    if not vals:
        raise FileNotFoundError(f"{root}: no LR_bicubic/X{scale}/*.png")
    return {"backend": backend, "psnr_y": float(np.mean(vals)), "images": len(vals)}


def _fresh(code: str, env: dict | None = None) -> dict:
    """Run ``code`` in a fresh Python process (extra ``env`` set) and parse the JSON object its last output line
    prints; ``{"error": last stderr line}`` when it fails."""
    import os

    p = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env={**os.environ, **(env or {})})
    if p.returncode != 0:
        return {"error": (p.stderr.strip().splitlines() or ["failed"])[-1][:300]}
    return json.loads(p.stdout.strip().splitlines()[-1])


def run_backend_bench(model_name: str, tile: int = 128, rounds: int = 3, repeat: int = 3,
                      backends: tuple[str, ...] | None = None, set5: str | None = None) -> dict:
    """``restore bench --backends``: every path on the same tile, interleaved (A B C .. A B C .., one fresh
    process per backend and round), best and median of the rounds' bests, each path's max difference to fp32
    ``torch``, its fraction of the fp32 GEMM peak, and its mean PSNR-Y on Set5 when ``set5`` is given.

    Args:
        model_name: Catalogue name or checkpoint path.
        tile: Edge of the square input tile (input pixels).
        rounds: Interleaved rounds (fresh processes each).
        repeat: Timed calls per process (after one warm-up); the process's best counts.
        backends: Paths to time (default: :data:`PEER` and every backend in :data:`restore.backends.BACKENDS`
            that :func:`restore.backends.unavailable` allows here).
        set5: Set5 folder (``HR/`` and ``LR_bicubic/X<scale>/``) for the PSNR-Y column, or None.

    Returns:
        ``{"machine": machine_rates(...), "rows": [{"backend", "best", "median", "max_diff", "peak_fraction",
        "psnr_y", "psnr_cost", ...} or {"backend", "error"}]}``.

    Raises:
        RestoreError: ``model_name`` cannot be loaded (one line).
    """
    import statistics
    import tempfile

    from .backends import BACKENDS, unavailable
    from .models import load_model

    m = load_model(model_name)
    dev = torch.device("cpu")
    skipped = {}
    if backends is None:
        backends = (PEER,) + tuple(b for b in BACKENDS if not unavailable(m, b, dev))
        skipped = {b: unavailable(m, b, dev) for b in BACKENDS if unavailable(m, b, dev)}
    machine = _fresh(f"import json; from restore.bench import machine_rates; print(json.dumps(machine_rates({model_name!r}, {tile})))")
    times: dict[str, list[float]] = {b: [] for b in backends}
    errors: dict[str, str] = {}
    with tempfile.TemporaryDirectory() as d:
        for _ in range(max(1, rounds)):
            for b in backends:
                if b in errors:
                    continue
                npy = f"{d}/{b}.npy"
                r = _fresh(f"import json; from restore.bench import bench_backend; "
                           f"print(json.dumps(bench_backend({model_name!r}, {b!r}, {tile}, {repeat}, {npy!r})))",
                           env={"RESTORE_FUSED_ATTENTION": "0"} if b == PEER else None)
                if "error" in r:
                    errors[b] = r["error"]
                else:
                    times[b].append(r["seconds"])
        ref = np.load(f"{d}/torch.npy") if "torch" in times and times["torch"] else None
        rows = []
        for b in backends:
            if b in errors:
                rows.append({"backend": b, "error": errors[b]})
                continue
            row = {"backend": b, "best": min(times[b]), "median": statistics.median(times[b]), "rounds": len(times[b])}
            if ref is not None:
                row["max_diff"] = float(np.abs(np.load(f"{d}/{b}.npy") - ref).max())
            if "flops_per_tile" in machine and "gemm_fp32_gflops" in machine:
                row["gflops"] = machine["flops_per_tile"] / row["best"] / 1e9
                row["peak_fraction"] = row["gflops"] / machine["gemm_fp32_gflops"]
            rows.append(row)
    if set5:
        base = None
        for row in rows:
            if "error" in row:
                continue
            r = _fresh(f"import json; from restore.bench import set5_psnr; "
                       f"print(json.dumps(set5_psnr({model_name!r}, {row['backend']!r}, {set5!r}, {tile})))",
                       env={"RESTORE_FUSED_ATTENTION": "0"} if row["backend"] == PEER else None)
            if "error" in r:
                row["psnr_error"] = r["error"]
                continue
            row["psnr_y"] = r["psnr_y"]
            if row["backend"] == "torch":
                base = r["psnr_y"]
        for row in rows:
            if base is not None and "psnr_y" in row:
                row["psnr_cost"] = row["psnr_y"] - base
    for b, why in skipped.items():
        rows.append({"backend": b, "skipped": why})
    return {"model": model_name, "tile": tile, "machine": machine, "rows": rows}
