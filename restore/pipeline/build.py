"""Stage objects from a validated pipeline spec: each step type's builder."""

from __future__ import annotations

from . import hdr_stages as h
from . import schema
from .stages import ConvertStage, DevelopStage, ExposureStage, ModelStage, ResizeStage, Stage, WriteStage

__all__ = ["build_stages"]

_BUILDERS = {
    schema.DevelopStep: lambda s: DevelopStage(s.develop),
    schema.ModelStep: lambda s: ModelStage(s.model),
    schema.ResizeStep: lambda s: ResizeStage(s.resize),
    schema.ConvertStep: lambda s: ConvertStage(s.convert),
    schema.ExposureStep: lambda s: ExposureStage(s.exposure),
    schema.WriteStep: lambda s: WriteStage(s.write),
    schema.AlignStep: lambda s: h.AlignStage(s.align),
    schema.MergeStep: lambda s: h.MergeStage(s.merge),
    schema.FuseStep: lambda s: h.FuseStage(s.fuse),
    schema.TonemapStep: lambda s: h.TonemapStage(s.tonemap),
    schema.DenoiseStep: lambda s: h.DenoiseStage(s.denoise),
}


def build_stages(spec: schema.PipelineSpec) -> list[Stage]:
    """Stage objects for a validated spec, in order."""
    return [_BUILDERS[type(s)](s) for s in spec.steps]
