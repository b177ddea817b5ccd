"""restore: low-level image restoration and HDR.

Public API::

    import restore
    img = restore.read("photo.dng")                 # Image: float32 (H, W, C) + encoding + metadata
    p = restore.load_pipeline("pipelines/sr-x2.yaml")
    out = p(array_uint8)                            # numpy in, numpy out
    m = restore.load_model("dat-light-x2")          # or a .safetensors / .pth path
    restore.write(img, "out.exr", dtype="half")
"""

from __future__ import annotations

from .errors import InputError, ModelError, OutputError, PipelineError, RestoreError
from .image import CAMERA_LINEAR, LINEAR_REC709, SRGB, Encoding, Image, Metadata
from .io import RawOptions, read, write

__version__ = "0.1.0"

__all__ = [
    "Image",
    "Encoding",
    "Metadata",
    "SRGB",
    "LINEAR_REC709",
    "CAMERA_LINEAR",
    "RawOptions",
    "read",
    "write",
    "load_model",
    "load_pipeline",
    "RestoreError",
    "InputError",
    "OutputError",
    "PipelineError",
    "ModelError",
    "__version__",
]


def load_model(name_or_path):
    """Load a model by catalogue name or checkpoint path; see :func:`restore.models.load_model`."""
    from .models import load_model as _load

    return _load(name_or_path)


def load_pipeline(source):
    """Load a pipeline (YAML path, text or dict); see :func:`restore.pipeline.load_pipeline`."""
    from .pipeline import load_pipeline as _load

    return _load(source)
