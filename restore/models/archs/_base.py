"""The descriptor every architecture declares, next to its code: :class:`ArchInfo`.

spandrel carries the super-resolution transformers (HAT, DRCT, DAT, RGT, CRAFT,
SwinIR, ...) and convolutional nets (ESRGAN, Compact, RealCUGAN, ...); the
architectures it does not carry live one file each in this package.  Every
such file defines

* the ``nn.Module`` with the *official* class name, constructor keyword names
  and state-dict key names, so an official checkpoint loads with
  ``strict=True``;
* a :class:`spandrel.Architecture` subclass that detects the model from the
  state-dict keys alone, infers its hyper-parameters from tensor shapes and
  states its size requirements (its ``load`` builds the spandrel descriptor
  with :func:`describe`: channels, scale, fp16/bf16 safety);
* a call to :func:`register` with its :class:`ArchInfo`: task, frames, input
  encoding, output range, tiling (overlap / context / window / whole image /
  fixed size), side inputs, the measured CPU bf16 verdict, the official
  checkpoints it accepts.

spandrel's own architectures get their :class:`ArchInfo` from a
``spandrel_<family>.py`` module calling :func:`declare` (overlap, context,
window, CPU bf16 verdict, the fused-attention patches of
:mod:`restore.models.fused_attention`, official checkpoints).

:mod:`restore.models.archs` imports every public module of the package
(sorted; ``_``-prefixed helpers are skipped) and adds the registered
architectures to ``spandrel.MAIN_REGISTRY`` so ``restore.load_model(path)``
needs no hint.  Adding an architecture is adding one module:

1. ``restore/models/archs/<name>.py`` with the module, the ``Architecture``
   (``detect``, ``load`` via :func:`describe`) and ``register(Arch(), ArchInfo(...),
   before=(...))`` (``before``: ids whose detection would also match, tried after it);
2. its golden fixture in ``../shared/golden/<name>`` and one ``Case`` row in
   ``tests/archs/test_contract.py`` (plus ``test_<name>.py`` only for what the
   contract cannot express);
3. ``python -m restore.models.archs docs/models.md`` to regenerate the table.

Hyper-parameters the weights cannot tell (Rawformer's ViT head count: the
attention projections have the same shapes for any head count) may come with
the checkpoint: an architecture that has such parameters defines
``load_with(state_dict, hparams: Mapping) -> descriptor``, and the loader
passes it the ``restore.hparams`` JSON of a safetensors file's metadata or a
sidecar JSON (``<checkpoint>.json`` or ``config.json`` beside it; its
``kwargs`` mapping, else its top level).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, Literal, TypeVar

import torch
from spandrel import Architecture, ArchId, ImageModelDescriptor, ModelTiling, SizeRequirements, StateDict

__all__ = [
    "ArchInfo",
    "SideInput",
    "AttentionPatch",
    "Official",
    "register",
    "declare",
    "registered",
    "declared",
    "info_for",
    "describe",
]

M = TypeVar("M", bound=torch.nn.Module)

InputEncoding = Literal["srgb", "linear", "raw-rgb", "hdr-ldr-pair", "cfa-packed"]
OutputRange = Literal["clamped", "unbounded", "sigmoid"]


@dataclass(frozen=True)
class SideInput:
    """A second network input the architecture computes from the image with weights the checkpoint lacks.

    The model step loads those weights once (from the model-step option named
    :attr:`option`) and feeds the network ``build(image, side_module)``
    instead of the image (:meth:`restore.models.RestorationModel.forward_for`).

    Attributes:
        name: Short id shown to users, e.g. ``"vgg19-hypercolumn"``.
        option: The model-step option (a key of the options mapping given to
            :meth:`~restore.models.RestorationModel.prepare`) holding the path
            to the side weights, e.g. ``"vgg19"``.
        needed: ``input_channels -> bool``: whether a checkpoint with that many
            input channels takes the side input (DRNet trained without
            ``--hyper`` takes plain RGB).
        load: ``option value -> nn.Module`` (CPU, eval mode).  Raises
            ``ValueError``/``RuntimeError``/``OSError``/``TypeError`` for an
            unusable value; the first line of the message is shown.
        build: ``(image (B, C, H, W) float, side module on the same device)
            -> network input (B, input_channels, H, W)``.
        image_channels: Channels of the image the tiler feeds (3 for RGB).
        missing: The sentence shown when the option is not set, after
            "model 'NAME' " (e.g. "takes a VGG19 hypercolumn: set ...").
        what: What the weights are, for load errors ("VGG19 weights").
        from_image: ``(image, input_channels, pixels, options) -> nn.Module``
            for a side input computed from each image rather than loaded from
            an option (the RAW denoiser's noise-sigma map from the image's noise
            profile; the RGB denoiser's noise level, estimated from ``pixels``
            unless ``options[side.option]`` sets it):
            :meth:`~restore.models.RestorationModel.bind_image` calls it per
            image with the whole image's pixels as the model sees them
            (``(H, W, C)`` float32, the model's input encoding) and the model
            step's options; :meth:`~restore.models.RestorationModel.prepare`
            skips it (``load`` unused).  Raises a one-line ``RestoreError`` (or
            ``ValueError``) when the image lacks what it needs.
    """

    name: str
    option: str
    needed: Callable[[int], bool]
    load: Callable[[Any], torch.nn.Module]
    build: Callable[[torch.Tensor, torch.nn.Module], torch.Tensor]
    image_channels: int = 3
    missing: str = ""
    what: str = "weights"
    from_image: Callable[[Any, int, Any, Mapping[str, Any]], torch.nn.Module] | None = None


@dataclass(frozen=True)
class AttentionPatch:
    """A fused inference forward for one class of a spandrel architecture (see
    :func:`restore.models.fused_attention.apply_patches`).

    Attributes:
        module: Import path of the module defining the class
            (``"spandrel.architectures.DAT.__arch.DAT"``).
        cls: Class name inside ``module`` (``"Spatial_Attention"``).
        method: Method replaced per instance (``"forward"``, ``"calculate_mask"``).
        fn: The replacement, called as a bound method; it must compute the same
            function as the official method (float32: to float rounding) and fall
            back to the official method when autograd or training is on.
    """

    module: str
    cls: str
    method: str
    fn: Callable[..., Any]


@dataclass(frozen=True)
class Official:
    """The official checkpoints an architecture loads unchanged (by path; nothing is downloaded).

    Attributes:
        repo: URL of the official repository.
        checkpoints: Released checkpoint names (or a note when none are released).
        layout: How the official file wraps the state dict (``"{'params': state_dict}"``).
    """

    repo: str
    checkpoints: tuple[str, ...]
    layout: str = "plain state_dict"


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
            ``cat(ldr**gamma / t, ldr)`` as in Kalantari's HDR pipeline;
            ``"cfa-packed"``: a Bayer CFA mosaic (``develop: {output: cfa}``,
            0 = black, 1 = white, unclipped) packed to 4 half-resolution planes
            R, G1, G2, B (:mod:`restore.models.cfa`); overlap and context are
            then in packed pixels.
        output_range: ``"clamped"`` - the official test clamps to [0, 1];
            ``"sigmoid"`` - the network already ends in a sigmoid;
            ``"unbounded"`` - linear output, never clamp.
        overlap: Context in pixels (input resolution) a tile needs on each side
            so tiled and whole-image outputs agree: at least one attention
            window / receptive field step.  0 means "do not tile".
        context: Extra input pixels around each tile, computed and cropped
            away (``tile_pad``), for convolutional receptive fields.
        context_of: When the context depends on the checkpoint's
            hyper-parameters (a deeper U-Net), a function of the loaded
            module giving it; :attr:`context` is then the default layout's.
        window: The size the network pads its input to internally (attention
            window), invisible in the size requirements; tiles are aligned to it
            unless the attention runs fused (``RestorationModel.tile_align``).
        fixed_size: True when the network only runs at the spatial size baked
            into its weights (Rawformer's positional grid).  Tiling then uses
            exactly that tile size.
        side_inputs: Inputs computed from the image with weights the checkpoint
            does not carry (:class:`SideInput`; the reflection-removal net's
            VGG19 hypercolumn).  :attr:`extra_inputs` lists their names.
        whole_image: Tiles change the output (global attention or pooling;
            measured by benchmarks/arch_tiling.py): the model step runs the
            whole image unless the pipeline sets a tile, and the spandrel
            descriptor's ``tiling`` is ``DISCOURAGED`` (else ``SUPPORTED``).
        cpu_bf16: The measured CPU bfloat16 verdict (``benchmarks/cpu_precision.py``:
            PSNR-Y cost against fp32); non-empty means ``precision: auto`` may
            pick bf16 on CPUs with native bf16 (:func:`restore.tiling.resolve_precision`).
        attention: Fused inference forwards applied at load time
            (:class:`AttentionPatch`; spandrel's window-attention archs).
        official: The official checkpoints it loads (:class:`Official`), or None.
        probe_tile: Edge in input pixels of the tile ``backend: auto`` times its paths on
            (:func:`restore.backends.probe_shape`); 0 = :data:`restore.backends.PROBE_TILE`.  For a network
            whose paths rank differently on small tiles than on the tiles its pipelines run (per-call overheads
            weigh more on a cheap convolutional network).
        notes: Free text shown by ``restore models``.
    """

    task: str
    frames: int = 1
    input_encoding: InputEncoding = "srgb"
    output_range: OutputRange = "clamped"
    overlap: int = 32
    context: int = 0
    context_of: Callable[[torch.nn.Module], int] | None = None
    window: int = 1
    fixed_size: bool = False
    side_inputs: tuple[SideInput, ...] = ()
    whole_image: bool = False
    cpu_bf16: str = ""
    attention: tuple[AttentionPatch, ...] = ()
    official: Official | None = None
    probe_tile: int = 0
    notes: str = ""

    @property
    def extra_inputs(self) -> tuple[str, ...]:
        """Names of :attr:`side_inputs` (``("vgg19-hypercolumn",)``)."""
        return tuple(s.name for s in self.side_inputs)

    @property
    def cpu_bf16_ok(self) -> bool:
        """True when bfloat16 on CPU was measured and accepted (:attr:`cpu_bf16`)."""
        return bool(self.cpu_bf16)


@dataclass
class _Entry:
    arch: Architecture[torch.nn.Module]
    info: ArchInfo
    before: tuple[ArchId, ...] = field(default_factory=tuple)


_REGISTERED: dict[str, _Entry] = {}
#: Descriptors of spandrel's own architectures (by spandrel id), declared by ``spandrel_*`` modules.
_DECLARED: dict[str, ArchInfo] = {}


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


def declare(arch_id: str, info: ArchInfo) -> ArchInfo:
    """Record the descriptor of one of spandrel's own architectures (spandrel detects and loads it).

    Args:
        arch_id: spandrel's architecture id (``"DAT"``, ``"ESRGAN"``).
        info: What tiling, precision and ``restore models`` need to know.

    Returns:
        ``info`` unchanged.

    Raises:
        ValueError: if ``arch_id`` is already declared or registered.
    """
    if arch_id in _DECLARED or arch_id in _REGISTERED:
        raise ValueError(f"architecture {arch_id!r} declared twice")
    _DECLARED[arch_id] = info
    return info


def registered() -> dict[str, _Entry]:
    """All architectures recorded by :func:`register`, by id (insertion order)."""
    return dict(_REGISTERED)


def declared() -> dict[str, ArchInfo]:
    """Every descriptor: ours (:func:`register`) then spandrel's (:func:`declare`), by id."""
    return {**{k: e.info for k, e in _REGISTERED.items()}, **_DECLARED}


def info_for(arch_id: str) -> ArchInfo | None:
    """The :class:`ArchInfo` of an architecture (ours or a declared spandrel one), or None."""
    entry = _REGISTERED.get(str(arch_id))
    return entry.info if entry else _DECLARED.get(str(arch_id))


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
