"""Shared contract for the architectures ``restore`` implements itself.

spandrel carries the super-resolution transformers (HAT, DRCT, DAT, RGT, CRAFT,
SwinIR, ...).  The architectures it does not carry live one file each in this
package.  Every file defines

* the ``nn.Module`` with the *official* class name, constructor keyword names
  and state-dict key names, so an official checkpoint loads with
  ``strict=True``;
* a :class:`spandrel.Architecture` subclass that detects the model from the
  state-dict keys alone and infers its hyper-parameters from tensor shapes;
* a call to :func:`register` that records the architecture together with an
  :class:`ArchInfo` - the facts spandrel's descriptor cannot express.

The architectures' ``load`` build their descriptors with :func:`describe`.

:mod:`restore.models.archs` imports every file and adds the architectures to
``spandrel.MAIN_REGISTRY`` so ``restore.load_model(path)`` needs no hint.

Hyper-parameters the weights cannot tell (Rawformer's ViT head count: the
attention projections have the same shapes for any head count) may come with
the checkpoint: an architecture that has such parameters defines
``load_with(state_dict, hparams: Mapping) -> descriptor``, and the loader
passes it the ``restore.hparams`` JSON of a safetensors file's metadata or a
sidecar JSON (``<checkpoint>.json`` or ``config.json`` beside it; its
``kwargs`` mapping, else its top level).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal, TypeVar

import torch
from spandrel import Architecture, ArchId, ImageModelDescriptor, ModelTiling, SizeRequirements, StateDict

__all__ = ["ArchInfo", "register", "registered", "info_for", "describe"]

M = TypeVar("M", bound=torch.nn.Module)

InputEncoding = Literal["srgb", "linear", "raw-rgb", "hdr-ldr-pair"]
OutputRange = Literal["clamped", "unbounded", "sigmoid"]


@dataclass(frozen=True)
class ArchInfo:
    """What a caller must know about an architecture beyond spandrel's descriptor.

    Attributes:
        task: Short task name (``"derain"``, ``"weather"``, ``"hdr-merge"``,
            ``"raw-to-raw"``, ``"reflection"``, ``"restoration"``).
        frames: Number of input frames.  HDR merge models take 3 (short,
            reference, long); their state dict still belongs to one module and
            the module's ``forward`` accepts either the frames as separate
            tensors ``(B, C, H, W)`` each, or one tensor with the frames
            concatenated on the channel axis ``(B, frames*C, H, W)``.
        input_encoding: What the pixels fed to the model are.  ``"srgb"``:
            display-referred sRGB-encoded values in [0, 1];  ``"linear"``:
            linear values in [0, 1];  ``"raw-rgb"``: camera-space linear RGB
            in [0, 1] (Rawformer);  ``"hdr-ldr-pair"``: per frame 6 channels,
            ``cat(ldr**gamma / t, ldr)`` as in Kalantari's HDR pipeline.
        output_range: ``"clamped"`` - the official test clamps to [0, 1];
            ``"sigmoid"`` - the network already ends in a sigmoid;
            ``"unbounded"`` - linear output, never clamp.
        overlap: Context in pixels (input resolution) a tile needs on each side
            so tiled and whole-image outputs agree: at least one attention
            window / receptive field step.  0 means "do not tile".
        context: Extra input pixels around each tile, computed and cropped
            away (``tile_pad``), for convolutional receptive fields.
        window: The size the network pads its input to internally (attention
            window), invisible in the size requirements; tiles are aligned to it
            unless the attention runs fused (``RestorationModel.tile_align``).
        fixed_size: True when the network only runs at the spatial size baked
            into its weights (Rawformer's positional grid).  Tiling then uses
            exactly that tile size.
        extra_inputs: Names of side inputs the caller must compute, e.g.
            ``("vgg19-hypercolumn",)`` for the reflection-removal net.
        whole_image: Tiles change the output (global attention or pooling;
            measured by benchmarks/arch_tiling.py): the model step runs the
            whole image unless the pipeline sets a tile, and the spandrel
            descriptor's ``tiling`` is ``DISCOURAGED`` (else ``SUPPORTED``).
        notes: Free text shown by ``restore models``.
    """

    task: str
    frames: int = 1
    input_encoding: InputEncoding = "srgb"
    output_range: OutputRange = "clamped"
    overlap: int = 32
    context: int = 0
    window: int = 1
    fixed_size: bool = False
    extra_inputs: tuple[str, ...] = ()
    whole_image: bool = False
    notes: str = ""


@dataclass
class _Entry:
    arch: Architecture[torch.nn.Module]
    info: ArchInfo
    before: tuple[ArchId, ...] = field(default_factory=tuple)


_REGISTERED: dict[str, _Entry] = {}


def register(
    arch: Architecture[torch.nn.Module],
    info: ArchInfo,
    before: tuple[str, ...] = (),
) -> Architecture[torch.nn.Module]:
    """Record ``arch`` (with its :class:`ArchInfo`) for addition to spandrel's registry.

    Args:
        arch: The spandrel architecture object.
        info: Facts the descriptor cannot express.
        before: IDs of architectures (ours or spandrel's) that must be tried
            *after* this one because their detection would also match.

    Returns:
        ``arch`` unchanged, so it can be used as ``FooArch = register(FooArch(), ...)``.

    Raises:
        ValueError: if an architecture with the same id is already registered.
    """
    if str(arch.id) in _REGISTERED:
        raise ValueError(f"architecture {arch.id!r} registered twice")
    _REGISTERED[str(arch.id)] = _Entry(arch, info, tuple(ArchId(b) for b in before))
    return arch


def registered() -> dict[str, _Entry]:
    """All architectures recorded by :func:`register`, by id (insertion order)."""
    return dict(_REGISTERED)


def info_for(arch_id: str) -> ArchInfo | None:
    """The :class:`ArchInfo` of one of our architectures, or None for spandrel's own."""
    entry = _REGISTERED.get(str(arch_id))
    return entry.info if entry else None


def describe(
    arch: Architecture[M],
    model: M,
    state_dict: StateDict,
    *,
    tags: list[str],
    input_channels: int,
    output_channels: int,
    size_requirements: SizeRequirements,
    supports_bfloat16: bool = False,
) -> ImageModelDescriptor[M]:
    """The spandrel descriptor every architecture here returns from ``load``.

    Fixed for all of them: purpose ``"Restoration"``, scale 1, no float16
    (not validated for any; the per-pixel statistics of un-normalised
    features can overflow).  spandrel's descriptor strict-loads
    ``state_dict`` into ``model``.

    Args:
        arch: The architecture object (``self`` in ``load``).
        model: The freshly built module.
        state_dict: Its weights (canonical keys).
        tags: Short labels shown by ``restore models``.
        input_channels, output_channels: Channel counts of the call.
        size_requirements: What spandrel's call pads the input to.
        supports_bfloat16: Whether bfloat16 was validated.

    The descriptor's ``tiling`` comes from the registered
    :attr:`ArchInfo.whole_image` (``DISCOURAGED`` when tiles change the
    output), so ``restore models`` and the model step read one source.

    Raises:
        RuntimeError: from ``load_state_dict`` when ``state_dict`` does not fit ``model``.
    """
    entry = _REGISTERED.get(str(arch.id))
    tiling = ModelTiling.DISCOURAGED if entry is None or entry.info.whole_image else ModelTiling.SUPPORTED
    return ImageModelDescriptor(
        model,
        state_dict,
        architecture=arch,
        purpose="Restoration",
        tags=tags,
        supports_half=False,
        supports_bfloat16=supports_bfloat16,
        scale=1,
        input_channels=input_channels,
        output_channels=output_channels,
        size_requirements=size_requirements,
        tiling=tiling,
    )
