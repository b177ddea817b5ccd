"""Stage objects from a validated pipeline spec: each step's registered builder."""

from __future__ import annotations

from .base import Stage
from .registry import build_stage
from .schema import PipelineSpec

__all__ = ["build_stages"]


def build_stages(spec: PipelineSpec) -> list[Stage]:
    """Stage objects for a validated spec, in order (each step's registered stage; :mod:`restore.pipeline.registry`).

    Raises:
        KeyError: a step whose type is not registered (a spec built by hand with an unregistered step).
    """
    return [build_stage(s) for s in spec.steps]
