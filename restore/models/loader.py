"""Loading checkpoints safely and detecting their architecture.

* ``.safetensors``: no code at all.
* ``.pth`` / ``.pt`` / ``.ckpt``: ``torch.load(weights_only=True)``, PyTorch's
  restricted unpickler that only rebuilds tensors and plain containers, never
  runs code from the file.
* Official wrappers are unwrapped (``params``, ``params_ema``,
  ``state_dict``, ``icnn``, ``module.`` prefixes) and the architecture is
  detected from the keys by spandrel's registry, into which
  :mod:`restore.models.archs` adds our own architectures.
* Shipped files may omit buffers that are a pure function of the constructor
  (DAT's shifted-window ``attn_mask_*``, 8.4 M floats per DAT-light model);
  their safetensors metadata names the class (only from
  :data:`_REBUILD_ALLOWED` modules) and its kwargs, and the loader rebuilds
  those buffers from a freshly constructed model.
"""

from __future__ import annotations

import hashlib
import importlib
import json
import warnings
from pathlib import Path
from typing import Any

import torch

from ..errors import ModelError

__all__ = ["load_state_dict", "unwrap_checkpoint", "detect", "read_hparams", "sha256_file"]

_REBUILD_ALLOWED = ("spandrel.architectures.", "restore.models.archs.")
_WRAPPER_KEYS = ("params_ema", "params-ema", "params", "state_dict", "model_state_dict", "icnn", "model", "net", "netG", "generator")


def sha256_file(path: str | Path) -> str:
    """Hex SHA-256 of a file, read in 1 MiB blocks."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def unwrap_checkpoint(obj: Any, path: str | Path | None = None) -> dict[str, torch.Tensor]:
    """Find the state dict inside an official checkpoint and strip wrapper prefixes.

    Handles BasicSR ``{'params': sd}`` / ``{'params_ema': sd}``, training
    checkpoints ``{'epoch', 'state_dict', 'optimizer'}``, ERRNet-style
    ``{'icnn': sd, ...}``, ``module.`` (DataParallel) / ``netG.`` prefixes, and PyTorch Lightning
    checkpoints (``{'state_dict', 'global_step' | 'pytorch-lightning_version', ...}``) whose keys all carry
    the ``net.`` of a ``LightningModule`` holding the network as ``self.net``.

    Raises:
        ModelError: if no tensor dictionary can be found.
    """
    import spandrel

    lightning = isinstance(obj, dict) and "state_dict" in obj and ("pytorch-lightning_version" in obj or "global_step" in obj)
    if isinstance(obj, dict):
        for key in _WRAPPER_KEYS:
            inner = obj.get(key)
            if isinstance(inner, dict) and inner and all(isinstance(v, torch.Tensor) for v in inner.values()):
                obj = inner
                break
    if not isinstance(obj, dict) or not obj:
        raise ModelError(f"{path}: no state dict found in checkpoint")
    tensors = {k: v for k, v in obj.items() if isinstance(v, torch.Tensor)}
    if not tensors:
        raise ModelError(f"{path}: checkpoint holds no tensors (top-level keys: {sorted(obj)[:8]})")
    if lightning and all(k.startswith("net.") for k in tensors):  # a LightningModule holding the network as `self.net`
        tensors = {k[4:]: v for k, v in tensors.items()}
    return dict(spandrel.canonicalize_state_dict(tensors))


def _rebuild_buffers(sd: dict[str, torch.Tensor], meta: dict[str, str], path: Path) -> dict[str, torch.Tensor]:
    target = meta.get("restore.rebuild_class")
    if not target:
        return sd
    module_name, _, cls_name = target.partition(":")
    if not module_name.startswith(_REBUILD_ALLOWED):
        raise ModelError(f"{path}: refuses to rebuild buffers with {target!r} (not a known architecture module)")
    try:
        cls = getattr(importlib.import_module(module_name), cls_name)
        kwargs = json.loads(meta.get("restore.rebuild_kwargs", "{}"))
        with torch.device("cpu"), warnings.catch_warnings():
            warnings.filterwarnings("ignore", message="torch.meshgrid")
            ref = cls(**kwargs).state_dict()
    except Exception as e:
        raise ModelError(f"{path}: cannot rebuild dropped buffers with {target}: {e}") from None
    out = dict(sd)
    for k, v in ref.items():
        if k not in out:
            out[k] = v
    return out


def load_state_dict(path: str | Path) -> tuple[dict[str, torch.Tensor], dict[str, str]]:
    """Load a checkpoint file without executing code from it.

    Args:
        path: ``.safetensors``, ``.pth``, ``.pt`` or ``.ckpt`` file.

    Returns:
        ``(state_dict, metadata)``: canonical state dict (CPU tensors) and the
        safetensors metadata (empty for pickles).

    Raises:
        ModelError: missing file, unsupported suffix, a pickle that needs code
            execution, or a corrupt file.
    """
    path = Path(path)
    if not path.is_file():
        raise ModelError(f"{path}: model file not found")
    suffix = path.suffix.lower()
    meta: dict[str, str] = {}
    try:
        if suffix == ".safetensors":
            from safetensors import safe_open

            with safe_open(str(path), framework="pt", device="cpu") as f:
                meta = dict(f.metadata() or {})
                obj = {k: f.get_tensor(k) for k in f.keys()}
        elif suffix in (".pth", ".pt", ".ckpt", ".bin"):
            obj = torch.load(str(path), map_location="cpu", weights_only=True)
        else:
            raise ModelError(f"{path}: unsupported checkpoint type {suffix!r} (use .safetensors or .pth)")
    except ModelError:
        raise
    except Exception as e:
        msg = str(e).splitlines()[0] if str(e) else type(e).__name__
        if "weights_only" in str(e) or "Unsupported global" in str(e):
            msg = "checkpoint needs arbitrary code execution to unpickle; refused (convert it to safetensors)"
        raise ModelError(f"{path}: cannot load checkpoint: {msg}") from None
    sd = unwrap_checkpoint(obj, path)
    sd = _rebuild_buffers(sd, meta, path)
    return sd, meta


def read_hparams(path: str | Path, meta: dict[str, str]) -> dict[str, Any]:
    """Hyper-parameters shipped with a checkpoint (see :mod:`restore.models.archs._base`).

    Looks at the safetensors metadata ``restore.hparams`` (JSON), then at a
    sidecar ``<checkpoint>.json`` or ``config.json`` in the same folder (its
    ``kwargs`` mapping if present, else its top level).  Unreadable sidecars
    are ignored.
    """
    if meta.get("restore.hparams"):
        try:
            return dict(json.loads(meta["restore.hparams"]))
        except (ValueError, TypeError):
            raise ModelError(f"{path}: invalid restore.hparams metadata") from None
    p = Path(path)
    for side in (p.with_suffix(".json"), p.parent / "config.json"):
        if side.is_file():
            try:
                data = json.loads(side.read_text())
            except (OSError, ValueError):
                continue
            if isinstance(data, dict):
                kw = data.get("kwargs", data)
                return dict(kw) if isinstance(kw, dict) else {}
    return {}


def detect(state_dict: dict[str, torch.Tensor], path: str | Path | None = None, hparams: dict[str, Any] | None = None):
    """Detect the architecture of a state dict and build the model.

    Args:
        state_dict: Canonical state dict (see :func:`unwrap_checkpoint`).
        path: Named in errors.
        hparams: Hyper-parameters the weights cannot tell, for architectures
            that define ``load_with`` (see :func:`read_hparams`).

    Returns:
        A spandrel ``ModelDescriptor`` (model in eval mode, float32, CPU).

    Raises:
        ModelError: if no registered architecture matches, or loading fails.
    """
    import spandrel

    from . import archs  # registers our architectures, declares spandrel's
    from .fused_attention import fuse_attention
    from .mixed_precision import keep_head_and_tail_fp32

    try:
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", message="torch.meshgrid")  # spandrel's Swin-family code
            desc = spandrel.MAIN_REGISTRY.load(state_dict)
            if hparams and hasattr(desc.architecture, "load_with"):
                desc = desc.architecture.load_with(state_dict, hparams)
    except spandrel.UnsupportedModelError:
        raise ModelError(f"{path or 'state dict'}: architecture not recognised (neither spandrel nor restore knows these keys)") from None
    except Exception as e:
        raise ModelError(f"{path or 'state dict'}: failed to build model: {str(e).splitlines()[0]}") from None
    desc.model.eval()
    info = archs.info_for(str(desc.architecture.id))
    fuse_attention(desc.model, info.attention if info is not None else ())  # the patches the descriptor declares
    if getattr(desc, "purpose", None) == "SR":
        keep_head_and_tail_fp32(desc.model)
    return desc
