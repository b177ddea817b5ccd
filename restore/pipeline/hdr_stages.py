"""Pipeline stages for exposure brackets (lists of frames) and HDR radiance.

``align`` keeps a list, ``merge`` and ``fuse`` turn it into one image;
``tonemap`` and ``denoise`` work on the merged radiance.  The numerical work
lives in :mod:`restore.hdr`; the stages live with their options in
:mod:`restore.pipeline.steps`, their shared bracket helpers in
:mod:`restore.pipeline.brackets`.  This module gathers the names for callers.
"""

from __future__ import annotations

from .brackets import reference_index
from .steps.align import AlignStage
from .steps.denoise import DenoiseStage
from .steps.fuse import FuseStage
from .steps.merge import MergeStage
from .steps.tonemap import TonemapStage

__all__ = ["AlignStage", "MergeStage", "FuseStage", "TonemapStage", "DenoiseStage", "reference_index"]
