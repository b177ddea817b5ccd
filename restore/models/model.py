"""A loaded restoration model: spandrel descriptor + what tiling and encoding need."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import torch

from .archs import ArchInfo, info_for

__all__ = ["RestorationModel", "default_info"]

# Context (input pixels) that spandrel's own architectures need around a tile
# for tiled output to match whole-image output: their attention windows.
_SPANDREL_OVERLAP = {
    "DAT": 32,   # split windows up to 8x32 / 32x8
    "HAT": 32,   # 16x16 windows + overlapping cross-attention
    "DRCT": 32,
    "RGT": 32,
    "CRAFT": 32,
    "SwinIR": 16,  # 8x8 windows
    "Swin2SR": 16,
    "ATD": 32,
}


# Context (input pixels, computed and cropped away around each tile) for convolutional
# networks whose receptive field is wider than a blend overlap should be
# (helper measurements: Real-ESRGAN x4plus needs ~64 px to match whole-image
# output within 1.4/255, SRVGGNetCompact 24 px, RealSR 48 px).
_SPANDREL_CONTEXT = {
    "ESRGAN": 64,
    "Compact": 24,
    "RealCUGAN": 64,
}


def default_info(arch_id: str, purpose: str) -> ArchInfo:
    """ArchInfo for spandrel's own architectures (single sRGB frame, clamped output)."""
    task = {"SR": "super-resolution", "FaceSR": "face-restoration"}.get(purpose, "restoration")
    return ArchInfo(task=task, overlap=_SPANDREL_OVERLAP.get(arch_id, 16), context=_SPANDREL_CONTEXT.get(arch_id, 0),
                    window=_SPANDREL_OVERLAP.get(arch_id, 1))  # windowed archs pad to their window internally


@dataclass
class RestorationModel:
    """A model ready for :func:`restore.tiling.run_tiled`.

    Attributes:
        descriptor: spandrel ``ImageModelDescriptor`` (model in eval mode).
        info: :class:`~restore.models.archs.ArchInfo` for the architecture.
        name: Catalogue name or file path it came from.
        source: File the weights were read from.
    """

    descriptor: object
    info: ArchInfo
    name: str
    source: Path | None = None

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
        info = info_for(arch_id) or default_info(arch_id, getattr(descriptor, "purpose", "Restoration"))
        return cls(descriptor=descriptor, info=info, name=name, source=source)
