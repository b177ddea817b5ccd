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

__all__ = ["esrgan_tile_loop", "synthetic_image", "bench_method", "run_bench"]


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


def bench_method(model_name: str, method: str, width: int, height: int, tile: int, overlap: int, repeat: int, precision: str, device: str) -> dict:
    """Time one method in this process with autograd off (restored after); returns seconds, Mpx/s and peak RSS (MiB).

    ``whole`` and ``tiled`` run exactly as the model step would with ``tile: 0`` or the given ``tile`` and
    ``overlap`` set explicitly (:func:`restore.pipeline.model_run.run_model`: same device and precision
    choice, context, alignment, overlap clamp); ``esrgan-loop`` runs :func:`esrgan_tile_loop` on the same
    device and precision.  Torch's thread count is left as it is for every method.
    """
    from .models import load_model

    with torch.no_grad():  # never left disabled for the caller (tests call this in-process)
        return _bench_method(load_model(model_name), method, width, height, tile, overlap, repeat, precision, device)


def _bench_method(m, method: str, width: int, height: int, tile: int, overlap: int, repeat: int, precision: str, device: str) -> dict:
    from .pipeline.model_run import RunOptions, device_and_dtype, run_model

    run = RunOptions(tile=0 if method == "whole" else tile, overlap=overlap, precision=precision, device=device)
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
            run_model(m, img, run)
        else:
            t = torch.from_numpy(img.transpose(2, 0, 1).copy())[None].to(dev)
            with torch.inference_mode(), torch.autocast(dev.type, dtype=dtype, enabled=dtype != torch.float32):
                esrgan_tile_loop(forward, t, m.scale, tile).float().cpu()
        if dev.type == "cuda":
            torch.cuda.synchronize()
        best = min(best, time.perf_counter() - t0)
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    res = {"method": method, "seconds": best, "mpx_per_s": width * height / 1e6 / best, "peak_rss_mib": rss, "dtype": str(dtype).replace("torch.", "")}
    if dev.type == "cuda":
        res["peak_gpu_mib"] = torch.cuda.max_memory_allocated() / 2**20
        res["device"] = torch.cuda.get_device_name()
    return res


def run_bench(model_name: str, width: int, height: int, tile: int = 128, overlap: int = 16, repeat: int = 2,
              precision: str = "fp32", device: str = "cpu", methods=("whole", "tiled", "esrgan-loop")) -> list[dict]:
    """Run each method in a fresh Python process and collect the results (see :func:`bench_method`)."""
    out = []
    for meth in methods:
        code = ("import json,sys; from restore.bench import bench_method; "
                f"print(json.dumps(bench_method({model_name!r}, {meth!r}, {width}, {height}, {tile}, {overlap}, {repeat}, {precision!r}, {device!r})))")
        p = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
        if p.returncode != 0:
            out.append({"method": meth, "error": (p.stderr.strip().splitlines() or ["failed"])[-1]})
            continue
        out.append(json.loads(p.stdout.strip().splitlines()[-1]))
    whole = next((r for r in out if r.get("method") == "whole" and "seconds" in r), None)
    factor = ((tile + 2 * overlap) / tile) ** 2
    for r in out:
        if whole and "seconds" in r and r["method"] != "whole":
            r["ratio_to_whole"] = r["seconds"] / whole["seconds"]
            r["overlap_factor"] = factor if r["method"] == "tiled" else ((tile + 20) / tile) ** 2
    return out
