"""Network fusion of three exposures with HDR-Transformer / SCTNet checkpoints.

The official pipelines (Kalantari et al. 2017 data; HDR-Transformer ECCV 2022,
SCTNet ICCV 2023) feed each exposure as six channels
``cat(ldr**2.2 / t, ldr)`` with ``ldr`` the display-referred frame in [0, 1]
(16-bit TIFFs / 2**16), ``t = 2**EV`` relative to the *shortest* exposure, in
**BGR** channel order (cv2.imread without conversion), frames ordered short,
reference (middle), long.  The output is a sigmoid, linear HDR in units of the
short exposure, also BGR.  This module reproduces those conventions and
returns RGB radiance scaled to the reference (middle) exposure, like the
classical merges.
"""

from __future__ import annotations

from typing import Callable

import numpy as np
import torch

from ..tiling import TileSpec, run_tiled

__all__ = ["network_inputs", "merge_network"]

GAMMA = 2.2


def network_inputs(frames: list[np.ndarray], times_s: list[float]) -> tuple[np.ndarray, float]:
    """Build the 18-channel network input from three display-referred RGB frames.

    Args:
        frames: three ``(H, W, 3)`` float32 sRGB-encoded frames in [0, 1], any order.
        times_s: their exposure times in seconds.

    Returns:
        ``(x, t_ref)``: ``x`` float32 ``(18, H, W)`` - per frame (short, middle,
        long) ``[ldr**2.2 / t, ldr]`` in BGR order with ``t`` relative to the
        shortest exposure - and the middle frame's relative exposure ``t_ref``.

    Raises:
        ValueError: not exactly three frames, sizes differ, or non-positive times.
    """
    if len(frames) != 3 or len(times_s) != 3:
        raise ValueError(f"network HDR merge takes exactly 3 exposures, got {len(frames)}")
    if any(t is None or t <= 0 for t in times_s):
        raise ValueError("network HDR merge needs positive exposure times")
    if len({f.shape for f in frames}) != 1:
        raise ValueError("exposures differ in size")
    order = np.argsort(times_s)
    t_short = float(times_s[order[0]])
    chans = []
    for i in order:
        ldr = np.clip(frames[i][..., ::-1], 0.0, 1.0).transpose(2, 0, 1)  # RGB -> BGR, CHW
        t = float(times_s[i]) / t_short
        chans += [ldr**GAMMA / (t + 1e-8), ldr]
    return np.ascontiguousarray(np.concatenate(chans, 0), dtype=np.float32), float(times_s[order[1]]) / t_short


def merge_network(
    module: torch.nn.Module,
    frames: list[np.ndarray],
    times_s: list[float],
    *,
    spec: TileSpec = TileSpec(256, 32),
    multiple_of: int = 8,
    device: torch.device | str = "cpu",
    dtype: torch.dtype = torch.float32,
    progress: Callable[[int, int], None] | None = None,
) -> np.ndarray:
    """Merge three exposures with an HDR-Transformer / SCTNet module (tiled).

    Args:
        module: the network; ``forward`` accepts one ``(B, 18, H, W)`` tensor.
        frames, times_s: see :func:`network_inputs`.
        spec: tiling (the official test uses non-overlapping 256x256 tiles;
            overlap blends them instead).
        multiple_of: the model's window size.
        device, dtype, progress: see :func:`restore.tiling.run_tiled`.

    Returns:
        ``(H, W, 3)`` float32 linear RGB radiance, scaled to the middle
        (reference) exposure: a pixel well exposed there keeps ``ldr**2.2``.
    """
    x, t_ref = network_inputs(frames, times_s)
    y = run_tiled(module, x, scale=1, out_channels=3, spec=spec, multiple_of=multiple_of, device=device, dtype=dtype, progress=progress)
    # network output: BGR radiance in units of the short exposure -> RGB, reference units
    return np.ascontiguousarray(y[::-1].transpose(1, 2, 0) * t_ref, dtype=np.float32)
