"""The pipeline's steps, one module each.

Importing this package imports every module in it (except ``_private`` ones); each registers its step
with :func:`restore.pipeline.registry.register_step`.  Adding a step = adding a module here.
"""

from __future__ import annotations

import importlib
import pkgutil

__all__: list[str] = []


def _discover() -> None:
    for mod in pkgutil.iter_modules(__path__):
        if not mod.name.startswith("_"):
            importlib.import_module(f"{__name__}.{mod.name}")


_discover()
