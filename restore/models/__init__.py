"""Models: safe checkpoint loading, architecture detection (spandrel + ours), the catalogue."""

from __future__ import annotations

from pathlib import Path

from ..errors import ModelError
from .catalog import CatalogEntry, catalog, find, resolve
from .entry import CHECKPOINT_SUFFIXES
from .loader import detect, load_state_dict, read_hparams
from .model import RestorationModel
from .ncnn_catalog import apply_post_resize

__all__ = ["load_model", "RestorationModel", "catalog", "find", "CatalogEntry", "ModelError"]


def load_model(name_or_path: str | Path) -> RestorationModel:
    """Load a model by catalogue name or from a checkpoint path.

    Args:
        name_or_path: A catalogue name (see ``restore models``) or a path to a
            ``.safetensors`` / ``.pth`` checkpoint of any architecture spandrel
            or :mod:`restore.models.archs` knows.  The architecture is
            detected from the state dict; nothing needs to be told.  The few
            hyper-parameters no state dict can tell (Rawformer's head count)
            are read from the checkpoint's metadata or a sidecar JSON
            (:func:`restore.models.loader.read_hparams`).

    Returns:
        :class:`RestorationModel` (float32, CPU, eval mode): ``.module`` the
        network (official forward signature: ``(B, C, H, W)`` float in,
        ``(B, C', H*scale, W*scale)`` out), ``.info`` the architecture's
        descriptor (:class:`~restore.models.archs.ArchInfo`), window attention
        already fused where the descriptor declares patches.

    Raises:
        ModelError: unknown name, missing/unverifiable file, a pickle that
            would execute code, an unrecognised architecture, or weights that
            do not fit the detected architecture.
    """
    s = str(name_or_path)
    p = Path(s).expanduser()
    if p.suffix.lower() in CHECKPOINT_SUFFIXES or p.exists():
        sd, meta = load_state_dict(p)
        desc = apply_post_resize(detect(sd, p, read_hparams(p, meta)), meta)
        return RestorationModel.from_descriptor(desc, name=str(p), source=p)
    entry, path = resolve(s)
    sd, meta = load_state_dict(path)
    desc = apply_post_resize(detect(sd, path, read_hparams(path, meta)), meta)
    return RestorationModel.from_descriptor(desc, name=entry.name, source=path)
