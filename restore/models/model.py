"""A loaded restoration model: spandrel descriptor + what tiling and encoding need."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np
import torch

from ..errors import RestoreError

from .archs import ArchInfo, info_for, registered

__all__ = ["RestorationModel", "default_info"]

def default_info(arch_id: str, purpose: str) -> ArchInfo:
    """The descriptor of an architecture nobody declared (a spandrel architecture without a
    ``spandrel_*`` module here): single sRGB frame, clamped output, 16 px overlap, no window.

    Args:
        arch_id: spandrel's architecture id (unused: every undeclared one gets the same facts).
        purpose: spandrel's ``purpose`` (``"SR"``, ``"FaceSR"``, ``"Restoration"``...): sets the task.
    """
    return ArchInfo(task=_task(purpose), overlap=16)


def _task(purpose: str) -> str:
    return {"SR": "super-resolution", "FaceSR": "face-restoration"}.get(purpose, "restoration")


@dataclass
class RestorationModel:
    """A model ready for :func:`restore.tiling.run_tiled`.

    Attributes:
        descriptor: spandrel ``ImageModelDescriptor`` (model in eval mode).
        info: :class:`~restore.models.archs.ArchInfo` for the architecture.
        name: Catalogue name or file path it came from.
        source: File the weights were read from.
        side_modules: Side-input networks loaded by :meth:`prepare`, by
            :attr:`SideInput.name <restore.models.archs.SideInput.name>` (CPU).
    """

    descriptor: object
    info: ArchInfo
    name: str
    source: Path | None = None
    side_modules: dict[str, torch.nn.Module] = field(default_factory=dict)

    def _active_side_inputs(self) -> list:
        return [s for s in self.info.side_inputs if s.needed(self.input_channels)]

    def prepare(self, options: Mapping[str, object]) -> None:
        """Load what the architecture needs beyond its checkpoint, once, before the first image.

        Side inputs (:attr:`ArchInfo.side_inputs <restore.models.archs.ArchInfo.side_inputs>`)
        read their weights from ``options[side.option]`` (the model step's
        options, e.g. ``vgg19``); a checkpoint that does not take the side
        input (DRNet trained without ``--hyper``: 3 input channels) needs none.
        Idempotent.

        Args:
            options: The model step's options (``name`` is used in messages).

        Raises:
            RestoreError: (one line) a side input's option is not set, or its
                weights cannot be used.
        """
        label = options.get("name") or self.name
        for side in self._active_side_inputs():
            if side.name in self.side_modules or side.from_image is not None:
                continue
            value = options.get(side.option)
            if not value:
                raise RestoreError(f"model {label!r} {side.missing or f'needs `{side.option}:` in the model step'}")
            try:
                self.side_modules[side.name] = side.load(value)
            except (ValueError, RuntimeError, OSError, TypeError) as e:
                raise RestoreError(f"{value}: cannot use as {side.what}: {str(e).splitlines()[0]}") from None

    def bind_image(self, image, pixels: np.ndarray | None = None,
                   options: Mapping[str, object] | None = None) -> None:
        """Compute the side inputs the architecture derives from each image (:attr:`SideInput.from_image
        <restore.models.archs.SideInput.from_image>`: the RAW denoiser's sigma map from the image's noise
        profile, the RGB denoiser's noise level) for the next :meth:`forward_for`.  A no-op for models without
        such side inputs.

        Args:
            image: The :class:`~restore.image.Image` about to be run.
            pixels: Its whole pixels as the model sees them, ``(H, W, C)`` float32 in the model's input encoding
                (default: ``image.pixels``).  Side inputs measured from the image use the whole image, so
                every tile sees the same value.
            options: The model step's options (overrides such as ``noise_sigma``).

        Raises:
            RestoreError: (one line) the image lacks what the side input needs.
        """
        px = image.pixels if pixels is None else pixels
        for side in self._active_side_inputs():
            if side.from_image is None:
                continue
            try:
                self.side_modules[side.name] = side.from_image(image, self.input_channels, px, options or {})
            except ValueError as e:
                raise RestoreError(f"model {self.name!r}: {side.name}: {str(e).splitlines()[0]}") from None

    @property
    def tile_input_channels(self) -> int:
        """Channels of the image the tiler feeds :meth:`forward_for`'s function: the
        side input's image channels when one is active, else :attr:`input_channels`."""
        active = self._active_side_inputs()
        return active[0].image_channels if active else self.input_channels

    def forward_for(self, device: torch.device,
                    network: Callable[[torch.Tensor], torch.Tensor] | None = None) -> Callable[[torch.Tensor], torch.Tensor]:
        """The function the tiler calls: ``(B, tile_input_channels, H, W) -> (B, output_channels, H*s, W*s)``.

        The network itself, or, with an active side input, a function computing the network's full input
        from the image tile first (the side input bound now: :meth:`prepare` / :meth:`bind_image`; its
        network moved to ``device``) and then calling the network.

        Args:
            device: Where it runs.
            network: What runs the network on its full input ``(B, input_channels, H, W)``: a compiled
                module or an ONNX runtime (:func:`restore.backends.build_forward`); default the module,
                moved to ``device``.  Side inputs stay in PyTorch around it, so one network forward (one
                export, one compiled graph) serves every image while each image brings its own side input.

        Raises:
            RestoreError: a side input is needed but :meth:`prepare` / :meth:`bind_image` did not load it.
        """
        module = self.module.to(device) if network is None else network
        active = self._active_side_inputs()
        if not active:
            return module
        side = active[0]
        if side.name not in self.side_modules:
            first = "bind_image(image)" if side.from_image is not None else "prepare()"
            raise RestoreError(f"model {self.name!r}: {side.name} not loaded; call {first} first")
        net = self.side_modules[side.name].to(device)

        def forward(x: torch.Tensor, _module=module, _net=net, _build=side.build) -> torch.Tensor:
            return _module(_build(x, _net))

        return forward

    @property
    def module(self) -> torch.nn.Module:
        """The ``nn.Module`` (official forward signature), eval mode."""
        return self.descriptor.model

    @property
    def model(self) -> torch.nn.Module:
        """Alias of :attr:`module`: ``m.model(*inputs)`` calls the network as the official code does."""
        return self.descriptor.model

    @property
    def tiling_discouraged(self) -> bool:
        """True when tiles change the output (global attention or pooling): run whole unless asked."""
        from spandrel import ModelTiling

        return self.descriptor.tiling == ModelTiling.DISCOURAGED

    @property
    def fixed_size(self) -> tuple[int, int] | None:
        """(H, W) the network only runs at (Rawformer's positional grid), else None."""
        if not self.info.fixed_size:
            return None
        shape = getattr(self.module, "image_shape", None) or getattr(self.module, "input_shape", None)
        return (int(shape[-2]), int(shape[-1])) if shape is not None else None

    @property
    def shape_key(self) -> str:
        """16 hex digits identifying the architecture configuration (hash of the state-dict
        names and shapes, not values): the key of per-model caches (memory curve, threads)."""
        import hashlib

        shapes = ";".join(f"{k}:{tuple(v.shape)}" for k, v in sorted(self.module.state_dict().items()))
        return hashlib.sha256(shapes.encode()).hexdigest()[:16]

    @property
    def tile_align(self) -> int:
        """Multiple tile sides are rounded to (see :class:`restore.tiling.TileSpec`).

        A network that pads its input to an attention window internally computes
        the padded pixels anyway, so tiles are aligned to ``info.window``; unless
        its window attention runs fused (:mod:`restore.models.fused_attention`):
        then only the attention sees the padding, the convolutions and MLPs run on
        the tile itself, and the smallest balanced tile is the fastest (DAT-light
        x2, 512x512, tile 128, fp32: 16.0 s unaligned vs 20.1 s aligned;
        ``benchmarks/tile_align.py``).
        """
        fused = any(getattr(mod, "_restore_fused_forward", False) for mod in self.module.modules())
        return 1 if fused else max(1, int(self.info.window))

    @property
    def arch(self) -> str:
        return str(self.descriptor.architecture.id)

    @property
    def scale(self) -> int:
        return int(self.descriptor.scale)

    @property
    def input_channels(self) -> int:
        return int(self.descriptor.input_channels)

    @property
    def output_channels(self) -> int:
        return int(self.descriptor.output_channels)

    @property
    def multiple_of(self) -> int:
        return int(self.descriptor.size_requirements.multiple_of)

    @property
    def min_size(self) -> int:
        return int(self.descriptor.size_requirements.minimum)

    @property
    def supports_half(self) -> bool:
        return bool(self.descriptor.supports_half)

    @property
    def supports_bfloat16(self) -> bool:
        return bool(self.descriptor.supports_bfloat16)

    def describe(self) -> str:
        d = self.descriptor
        return (
            f"{self.name}: {self.arch} ({', '.join(d.tags) or '-'}), task {self.info.task}, x{self.scale}, "
            f"{self.input_channels}->{self.output_channels} ch, multiple of {self.multiple_of}, "
            f"overlap {self.info.overlap}px, fp16 {'yes' if self.supports_half else 'no'}, "
            f"bf16 {'yes' if self.supports_bfloat16 else 'no'}"
        )

    @classmethod
    def from_descriptor(cls, descriptor, name: str, source: Path | None = None) -> "RestorationModel":
        arch_id = str(descriptor.architecture.id)
        purpose = getattr(descriptor, "purpose", "Restoration")
        if arch_id in registered():
            info = info_for(arch_id)
        elif (declared_info := info_for(arch_id)) is not None:  # spandrel's own: the task follows the checkpoint
            info = replace(declared_info, task=_task(purpose))
        else:
            info = default_info(arch_id, purpose)
        if info.context_of is not None:  # this checkpoint's layout (e.g. U-Net depth / residual blocks)
            info = replace(info, context=int(info.context_of(descriptor.model)))
        return cls(descriptor=descriptor, info=info, name=name, source=source)
