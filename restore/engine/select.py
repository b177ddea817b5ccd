"""Choosing the executor of a run (``--executor local|ray``)."""

from __future__ import annotations

from pathlib import Path

from ..errors import RestoreError
from .executors import Executor, local_executor

__all__ = ["make_executor", "EXECUTORS"]

#: ``--executor`` choices.
EXECUTORS = ("local", "ray")


def make_executor(pipeline, timeout_s: float | None = None, device: str | None = None, *, kind: str = "local",
                  address: str | None = None, workers: int | None = None, gpus_per_worker: float = 0.0, out_dir: Path | None = None) -> Executor:
    """The executor for a run.

    Args:
        pipeline: The processor.
        timeout_s: Stall limit (> 0: :class:`IsolatedExecutor`; None/0 locally: :class:`InProcessExecutor`).
        device: Torch device for model steps.
        kind: ``local`` or ``ray``.
        address, workers, gpus_per_worker, out_dir: Ray only (see :class:`restore.engine.ray_executor.RayExecutor`).

    Raises:
        RestoreError: ``ray`` without Ray installed (one line: how to install it), or an unknown kind.
    """
    if kind == "ray":
        from .ray_executor import RayExecutor

        return RayExecutor(pipeline, timeout_s=timeout_s, device=device, address=address, workers=workers,
                           gpus_per_worker=gpus_per_worker, out_dir=out_dir)
    if kind != "local":
        raise RestoreError(f"unknown executor {kind!r}; use one of {', '.join(EXECUTORS)}")
    return local_executor(pipeline, timeout_s, device)
