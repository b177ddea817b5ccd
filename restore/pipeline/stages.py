"""Pipeline stages.  Each takes an :class:`~restore.image.Image` and returns one.

A stage declares the encoding it works in and converts what it receives, so
a model trained on sRGB [0, 1] images never sees linear radiance above 1 by
accident, and an EXR output is always linear.

Each step's stage lives with its options in its module under
:mod:`restore.pipeline.steps` (registered in :mod:`restore.pipeline.registry`);
the shared base is :mod:`restore.pipeline.base`, the model-run glue
:mod:`restore.pipeline.model_run`.  This module gathers the names for callers.
"""

from __future__ import annotations

from .base import Context, Stage, warmup
from .model_run import MIN_GLOBAL_TILE, whole_or_large_tiles, wide_overlap
from .steps.convert import ConvertStage
from .steps.develop import DevelopStage
from .steps.exposure import ExposureStage
from .steps.model import ModelStage
from .steps.resize import ResizeStage
from .steps.write import (
    MAX_NAME_BYTES,
    WriteStage,
    fit_name,
    output_path,
    template_fields,
)

__all__ = [
    "Context",
    "Stage",
    "DevelopStage",
    "ModelStage",
    "ResizeStage",
    "ConvertStage",
    "ExposureStage",
    "WriteStage",
    "warmup",
    "MIN_GLOBAL_TILE",
    "wide_overlap",
    "whole_or_large_tiles",
    "MAX_NAME_BYTES",
    "fit_name",
    "output_path",
    "template_fields",
]
