"""Option pieces shared by several steps: the strict base model, device syntax, ``tile: auto`` values,
precisions and bracket reference frames.

A step's own options model lives in its module under :mod:`restore.pipeline.steps`.
"""

from __future__ import annotations

import re
from typing import Literal, Union

from pydantic import BaseModel, ConfigDict, model_validator

__all__ = ["_Strict", "Precision", "Reference", "device_syntax", "int_or_auto"]


class _Strict(BaseModel):
    """Base of every options model: unknown keys are errors, values are frozen, YAML booleans are not numbers."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    @model_validator(mode="before")
    @classmethod
    def _no_bool_numbers(cls, data):
        """YAML ``true`` is not a number: pydantic would take it as 1 for an int or float option."""
        if isinstance(data, dict):
            for k, v in data.items():
                f = cls.model_fields.get(k)
                if f is not None and isinstance(v, bool) and "bool" not in str(f.annotation):
                    raise ValueError(f"{k}: {str(v).lower()} is not a valid value")
        return data


#: A step's ``precision`` option (see :func:`restore.tiling.resolve_precision`).
Precision = Literal["auto", "fp32", "fp16", "bf16"]

#: The reference frame of a bracket: by exposure (``middle`` = median) or an index.
Reference = Union[Literal["middle", "shortest", "longest"], int]

_DEVICE = r"^(auto|cpu|mps|cuda(:[0-9]+)?)$"


def device_syntax(v: str) -> str:
    """``v`` if it is a device name the pipeline accepts (``auto``, ``cpu``, ``cuda``, ``cuda:N``, ``mps``).

    Raises:
        ValueError: any other name (whether this machine has the device is checked when the step loads).
    """
    if not re.match(_DEVICE, str(v)):
        raise ValueError(f"device {v!r}: use auto, cpu, cuda, cuda:N or mps")
    return v


def int_or_auto(v, minimum: int, what: str):
    """``v`` if it is ``"auto"`` or an int (not a bool) >= ``minimum``.

    Raises:
        ValueError: anything else, naming ``what``.
    """
    if v == "auto" or (isinstance(v, int) and not isinstance(v, bool) and v >= minimum):
        return v
    raise ValueError(f"must be {what} or auto, not {v!r}")
