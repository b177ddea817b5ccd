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

from typing import TYPE_CHECKING, Any

from .errors import InputError, ModelError, OutputError, PipelineError, RestoreError
from .image import CAMERA_LINEAR, LINEAR_REC709, SRGB, Encoding, Image, Metadata
from .io import RawOptions, read, write

#: The one place the version is written: pyproject.toml reads it from here ([tool.setuptools.dynamic], statically,
#: so keep it a plain string literal), and ``restore --version`` and ``importlib.metadata`` report the same.
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


if TYPE_CHECKING:  # pragma: no cover - load_model's and load_pipeline's annotations
    from pathlib import Path

    from .models import RestorationModel
    from .pipeline import Pipeline


def load_model(name_or_path: str | Path) -> RestorationModel:
    """Load a model by catalogue name or checkpoint path (torch is imported on first use).

    Args:
        name_or_path: A catalogue name (``restore models``) or a ``.safetensors``/``.pth``
            checkpoint of any architecture spandrel or :mod:`restore.models.archs` knows
            (detected from the state dict; see :func:`restore.models.load_model`).

    Returns:
        A :class:`restore.models.RestorationModel`: float32, CPU, eval mode; ``.module`` is the
        network with the official forward signature, ``.info`` its architecture descriptor.

    Raises:
        ModelError: unknown name, missing or unverifiable file, a pickle that would execute
            code, or an unrecognised architecture.
    """
    from .models import load_model as _load

    return _load(name_or_path)


def load_pipeline(source: str | Path | dict[str, Any]) -> Pipeline:
    """Load and validate a pipeline and build its stages (models load on first use or ``prepare()``).

    Args:
        source: A ``.yaml``/``.yml`` file path, YAML text, or an already parsed mapping.

    Returns:
        A :class:`restore.pipeline.Pipeline`: call it on numpy arrays, or ``run`` it over files.

    Raises:
        PipelineError: an unreadable file, invalid YAML, or an invalid pipeline: one line per problem,
            each naming the file, the line and the key (see :func:`restore.pipeline.load_pipeline`).
    """
    from .pipeline import load_pipeline as _load

    return _load(source)
