"""Architectures spandrel does not carry, registered into ``spandrel.MAIN_REGISTRY`` on import.

See :mod:`restore.models.archs._base` for the contract every file follows.
"""

from __future__ import annotations

import importlib

import spandrel
from spandrel import ArchSupport

from ._base import ArchInfo, info_for, registered

__all__ = ["ArchInfo", "info_for", "registered", "MODULES"]

#: One module per architecture (family); importing each calls ``_base.register``.
MODULES: tuple[str, ...] = (
    "restormer_base",
    "drsformer",
    "histoformer",
    "hdr_transformer",
    "sctnet",
    "rawformer",
    "rrformer",
)


def _install() -> None:
    for name in MODULES:
        importlib.import_module(f"{__name__}.{name}")
    supports = [
        ArchSupport(entry.arch, entry.arch.detect, entry.before)
        for entry in registered().values()
    ]
    spandrel.MAIN_REGISTRY.add(*supports, ignore_duplicates=True)


_install()
