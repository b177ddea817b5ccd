"""Every architecture ``restore`` knows, one module each (or one per family), found automatically.

Each public module of this package (a name without a leading ``_``) declares
its architectures when imported:

* architectures spandrel does not carry (``restormer``, ``drsformer``,
  ``hdr_transformer``, ...) define the ``nn.Module``, a
  :class:`spandrel.Architecture` (detection, hyper-parameter inference, size
  requirements) and call :func:`~restore.models.archs._base.register` with an
  :class:`ArchInfo`; they are added to ``spandrel.MAIN_REGISTRY`` so
  ``restore.load_model(path)`` needs no hint;
* ``spandrel_*`` modules call :func:`~restore.models.archs._base.declare` for
  spandrel's own architectures (overlap/context/window, CPU bf16 verdict,
  fused-attention patches, official checkpoints).

Modules are imported in sorted name order (deterministic); detection order
between overlapping architectures is set by ``register(..., before=...)``,
never by import order.  Adding an architecture = adding one module here.

See :mod:`restore.models.archs._base` for the contract every file follows.
"""

from __future__ import annotations

import importlib
import pkgutil

import spandrel
from spandrel import ArchSupport

from ._base import ArchInfo, AttentionPatch, Official, SideInput, declared, info_for, registered
from ._table import architectures, table_markdown

__all__ = [
    "ArchInfo",
    "SideInput",
    "AttentionPatch",
    "Official",
    "info_for",
    "registered",
    "declared",
    "modules",
    "architectures",
    "table_markdown",
]


def modules() -> tuple[str, ...]:
    """Names of the architecture modules of this package (no ``_`` prefix), sorted."""
    return tuple(sorted(m.name for m in pkgutil.iter_modules(__path__) if not m.name.startswith("_")))


def _install() -> None:
    for name in modules():
        importlib.import_module(f"{__name__}.{name}")
    supports = [
        ArchSupport(entry.arch, entry.arch.detect, entry.before)
        for entry in registered().values()
    ]
    spandrel.MAIN_REGISTRY.add(*supports, ignore_duplicates=True)


_install()
