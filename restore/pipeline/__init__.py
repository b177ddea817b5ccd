"""YAML pipelines: schema, stages, runner."""

from ..engine import FileResult, RunReport, collect_inputs
from .runner import Pipeline, load_pipeline
from .schema import PipelineSpec, parse_pipeline

__all__ = ["Pipeline", "PipelineSpec", "FileResult", "RunReport", "collect_inputs", "load_pipeline", "parse_pipeline"]
