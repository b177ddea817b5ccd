"""A catalogue entry and where weight files are looked for (shared by the catalogue and the ncnn wheels)."""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

from ..cache import cache_dir

__all__ = ["CatalogEntry", "weight_dirs", "CHECKPOINT_SUFFIXES"]

#: Suffixes of checkpoint files a model name can be (``.safetensors``, ``.pth`` ...).
CHECKPOINT_SUFFIXES = {".safetensors", ".pth", ".pt", ".ckpt", ".bin"}

_REPO_WEIGHTS = Path(__file__).resolve().parents[2] / "weights"


@dataclass(frozen=True)
class CatalogEntry:
    """One named model.

    Attributes:
        name: Catalogue name (``dat-light-x2``).
        file: File name looked up in :func:`weight_dirs`.
        sha256: Expected hex digest; a mismatch refuses the file.
        arch: Architecture id (``DAT``...).
        task: ``super-resolution``, ``derain``, ...
        scale: Output/input size ratio.
        licence: SPDX-style licence of the weights.
        source: Where the weights come from.
        recipe: Command that (re)creates the file.
        when: One line: when to use it.
        quality: Measured quality with the command that measured it.
    """

    name: str
    file: str
    sha256: str
    arch: str
    task: str
    scale: int = 1
    licence: str = "unknown"
    source: str = ""
    recipe: str = ""
    when: str = ""
    quality: str = ""
    extra: dict = field(default_factory=dict, hash=False, compare=False)

    @property
    def path(self) -> Path | None:
        """First existing file among :func:`weight_dirs`, or None."""
        for d in weight_dirs():
            p = d / self.file
            if p.is_file():
                return p
        return None

    @property
    def available(self) -> bool:
        return self.path is not None


def weight_dirs() -> list[Path]:
    """Folders searched for weight files, in priority order."""
    dirs = [Path(p) for p in os.environ.get("RESTORE_WEIGHTS", "").split(os.pathsep) if p]
    dirs += [cache_dir("weights"), _REPO_WEIGHTS]
    return dirs


