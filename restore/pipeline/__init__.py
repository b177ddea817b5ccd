"""YAML pipelines: schema, stages, runner."""

from .runner import FileResult, Pipeline, RunReport, collect_inputs, load_pipeline
from .schema import PipelineSpec, parse_pipeline

__all__ = ["Pipeline", "PipelineSpec", "FileResult", "RunReport", "collect_inputs", "load_pipeline", "parse_pipeline"]
