"""``model``: run a restoration model over the image (tiled; :mod:`restore.pipeline.model_run`)."""

from __future__ import annotations

from typing import Callable, Literal, Union

import cv2
import numpy as np
from pydantic import Field, field_validator, model_validator

from ... import color
from ...backends import Backend
from ...errors import ModelError, RestoreError
from ...image import Encoding, Image
from ..base import Context, Stage
from ..model_run import RunOptions, RunState, run_model
from ..options import Precision, _Strict, device_syntax, int_or_auto
from ..registry import register_step

__all__ = ["ModelOptions", "ModelStage"]


class ModelOptions(_Strict):
    """Run a restoration model tiled.

    ``tile`` 0 = whole image, ``auto`` = the largest tile whose memory, predicted
    by the model's memory curve (measured on first use, :mod:`restore.memory`),
    fits ``memory`` (default: 80 % of free GPU memory, or 25 % of available RAM
    up to 8 GiB); default 256.  Architectures whose descriptor
    discourages tiling - global attention - run on the whole image when its
    predicted peak memory fits that budget, else in the largest tiles that
    fit, with an overlap of at least 1/8 tile (unless ``tile`` is set
    explicitly); ``overlap`` in input pixels (packed pixels for a CFA model; default: the architecture's own); ``alpha``: how an alpha channel is upscaled
    (``resize`` = Lanczos, ``model`` = through the model as grey);
    ``hdr``: how linear values above 1 are encoded around a model trained on
    sRGB [0, 1] (``exposure`` = the image exposed so its brightest 0.5 % reach
    white, sRGB-encoded, the model's change applied back as a scaled linear
    residual, as a ratio on channels clipped at white (:class:`restore.color.ExposureEncoding`);
    ``log`` = the reversible peak-normalised log encoding of
    :func:`restore.color.hdr_encode`; ``auto`` = sRGB when the image fits
    [0, 1], else ``exposure`` for a same-size model and ``log`` for an upscaler;
    ``clip`` = clip to [0, 1], then sRGB);
    ``compile``: run the network through ``torch.compile`` (TorchInductor):
    the first run compiles for each tile shape (tens of seconds to minutes on
    a CPU), the compiled kernels are cached in ``~/.cache/restore/inductor``
    and reused by later runs; worth it for large batches, not for a few files.
    ``backend``: how the network runs (:mod:`restore.backends`): ``torch`` (PyTorch with ``precision`` and
    ``compile``), ``auto`` (the fastest path timed on a probe tile at first use on this machine, within the
    quality rule, cached per CPU and model), or one path by name (``torch-bf16``, ``torch-compile``,
    ``onnxruntime``, ``openvino``; the last two are optional extras).
    ``threads`` (CPU): intra-op threads; ``auto`` = the fastest count measured
    on a small tile at first use and cached per machine and model
    (:mod:`restore.threads`).
    ``blend`` (strength, 0..1): the output is ``blend * model + (1 - blend) * input``, mixed in the model's
    working encoding (the input upscaled with Lanczos for a super-resolution model); 1 = the model's output,
    0 = the input unchanged (the network is not run).
    ``guard`` (``auto`` | ``off``): for models whose catalogue entry ships a guard network (the starters), keep the
    model's change only where the guard judges it removes the degradation: ``input + w * (model - input)`` with a
    per-pixel ``w`` in [0, 1] (:mod:`restore.guard`), so a photo without rain, haze or reflections is left (nearly)
    unchanged; the file's notes give the mean ``w``. ``off`` always uses the model's output.
    ``noise_sigma`` (0..1, models conditioned on a noise level: the RGB denoiser): the image's noise level in
    the model's input encoding, as :func:`restore.noise.estimate_sigma` measures it; default: estimated from
    each whole image.
    """

    name: str
    tile: Union[int, str] = 256
    overlap: int | None = Field(None, ge=0)
    context: int | None = Field(None, ge=0)  # extra px per tile side, cropped away (default: the architecture's)
    memory: str | None = None  # budget for tile: auto, e.g. "4GB" (binary units)
    batch: int = Field(1, ge=1, le=64)
    precision: Precision = "auto"
    device: str = "auto"
    alpha: Literal["resize", "model"] = "resize"
    hdr: Literal["auto", "exposure", "log", "clip"] = "auto"
    compile: bool = False
    backend: Literal["auto", Backend] = "torch"
    threads: Union[int, Literal["auto"]] = "auto"
    blend: float = Field(1.0, ge=0.0, le=1.0)
    guard: Literal["auto", "off"] = "auto"
    noise_sigma: float | None = Field(None, ge=0.0, le=1.0)
    vgg19: str | None = None  # ImageNet VGG19 weights (path) for models whose descriptor declares a VGG19 side input

    @field_validator("device")
    @classmethod
    def _device_value(cls, v):
        return device_syntax(v)

    @field_validator("threads", mode="before")
    @classmethod
    def _threads_value(cls, v):
        return int_or_auto(v, 1, "a thread count >= 1")

    @field_validator("tile", mode="before")
    @classmethod
    def _tile_value(cls, v):
        return int_or_auto(v, 0, "a tile edge in pixels >= 0 (0 = whole image)")

    @model_validator(mode="after")
    def _overlap_below_tile(self):
        if isinstance(self.tile, int) and self.tile and self.overlap is not None and self.overlap * 2 >= self.tile:
            raise ValueError(f"overlap ({self.overlap}) must be less than half the tile ({self.tile})")
        if self.memory is not None:
            from ...memory import parse_bytes

            if parse_bytes(self.memory) <= 0:
                raise ValueError("memory must be positive")
        return self


def blend_with_input(y: np.ndarray | None, x: np.ndarray, scale: int, blend: float) -> np.ndarray:
    """``blend * y + (1 - blend) * x`` in the model's working encoding (the ``blend`` option).

    Args:
        y: Model output, float32 ``(scale*H, scale*W, C)``; None when ``blend`` is 0 (the model was not run).
        x: Model input, float32 ``(H, W, C)`` in the same encoding; upscaled with Lanczos when ``scale > 1``.
        scale: Output/input size ratio of the model.
        blend: Weight of the model output in [0, 1].

    Returns:
        float32 ``(scale*H, scale*W, C)``.
    """
    if scale > 1:
        h, w = x.shape[:2]
        up = cv2.resize(x, (w * scale, h * scale), interpolation=cv2.INTER_LANCZOS4)
        x = (up[:, :, None] if up.ndim == 2 else up).astype(np.float32)
    if y is None:
        return np.ascontiguousarray(x, dtype=np.float32)
    if y.shape != x.shape:  # a model with other output channels: nothing to mix with
        raise RestoreError(f"blend needs the model's output channels ({y.shape[2]}) to equal its input's ({x.shape[2]})")
    return (blend * y + (1.0 - blend) * x).astype(np.float32)


@register_step("model", options=ModelOptions, model_option="name", order=20)
class ModelStage(Stage):
    """Run a restoration model over the image, tiled (see :mod:`restore.tiling`)."""

    kind = "model"
    #: A raw CFA mosaic goes to models whose input encoding is the packed CFA (``cfa-packed``,
    #: :mod:`restore.models.cfa`); other models refuse it in :meth:`_encode`.
    accepts_cfa = True

    def __init__(self, opts: ModelOptions):
        self.opts = opts
        self.model = None
        self.run_options = RunOptions.from_options(opts)
        self.run_state = RunState()
        self.guard = None
        self.guard_exposed = None  # the guard for HDR input the step exposes (hdr: exposure); None: self.guard

    @property
    def _compiled(self) -> dict | None:
        """The compiled forward's state (``failed``: why it ran eagerly), once compiled."""
        return self.run_state.compiled

    def prepare(self) -> None:
        """Load the model (and its side inputs) once.

        Raises:
            RestoreError: a device this machine lacks, a model that is not a one-frame model, side inputs
                that cannot be loaded, a named ``backend`` that cannot run it here; ModelError: the model cannot
                be found or loaded.
        """
        if self.model is None:
            from ...models import load_model
            from ...tiling import resolve_device

            device = resolve_device(self.opts.device)  # a device this machine lacks fails once, here, not per file
            model = load_model(self.opts.name)
            if model.info.frames != 1:
                raise RestoreError(f"model {self.opts.name!r} takes {model.info.frames} frames; use it in a merge step")
            model.prepare(self.opts.model_dump())  # side inputs the architecture declares (RestoreError if unusable)
            if self.opts.backend not in ("torch", "auto"):  # a named backend that cannot run fails once, here
                from ...backends import unavailable

                why = unavailable(model, self.opts.backend, device)
                if why:
                    raise RestoreError(f"model {self.opts.name!r}: backend {self.opts.backend}: {why}")
            if self.opts.guard == "auto" and model.scale == 1:
                from ...guard import guard_for

                try:
                    self.guard = guard_for(self.opts.name)
                    self.guard_exposed = guard_for(self.opts.name, exposed=True)
                except (ValueError, ModelError) as e:
                    raise RestoreError(f"model {self.opts.name!r}: weights/MANIFEST: {e}") from None
            self.model = model

    # -- colour handling -------------------------------------------------
    def _encode(self, image: Image) -> tuple[np.ndarray, Callable[[np.ndarray], np.ndarray], Encoding, bool]:
        """Model-space colour pixels (H, W, C), the function that maps model output back, the encoding of the
        result, and whether the pixels are an exposure of HDR input (``hdr: exposure``)."""
        want = self.model.info.input_encoding
        enc = image.encoding
        px = image.color
        if want == "cfa-packed" or enc.cfa:
            return (*self._encode_cfa(image, want), False)
        if want == "raw-rgb":
            if enc.transfer != "linear":
                raise RestoreError(f"model {self.opts.name!r} takes linear camera RGB; develop the RAW with output: camera")
            return np.clip(px, 0, 1), lambda y: y, enc, False
        if enc.primaries not in ("rec709", "camera") and px.shape[2] == 3:
            image = color.convert(image, Encoding(enc.transfer, "rec709", enc.referred))
            enc, px = image.encoding, image.color
        if want == "linear":
            lin = color.srgb_to_linear(px) if enc.transfer == "srgb" else px
            back = (lambda y: color.linear_to_srgb(y)) if enc.transfer == "srgb" else (lambda y: y)
            return np.clip(lin, 0, 1), back, enc, False
        # model wants sRGB-encoded [0, 1]
        if enc.transfer == "srgb":
            return np.clip(px, 0, 1), lambda y: y, enc, False
        hdr = self.opts.hdr
        peak = float(np.max(px, initial=0.0))
        if hdr == "auto" and peak > 1.0:
            hdr = "exposure" if self.model.scale == 1 and px.shape[2] == 3 else "log"
        if hdr == "exposure" and px.shape[2] == 3 and self.model.scale == 1:
            ex = color.ExposureEncoding(px)
            return ex.encoded, ex.decode, enc, True
        if hdr in ("log", "exposure"):  # exposure needs a same-size RGB model: the log encoding otherwise
            peak = max(peak, 1.0)
            return color.hdr_encode(px, peak), lambda y: color.hdr_decode(y, peak), enc, False
        return color.linear_to_srgb(np.clip(px, 0, 1)), color.srgb_to_linear, enc, False

    def _encode_cfa(self, image: Image, want: str) -> tuple[np.ndarray, Callable[[np.ndarray], np.ndarray], Encoding]:
        """A CFA mosaic packed to planes for a packed-CFA model (tiles, overlap and blend in packed pixels);
        a one-line refusal for a mosaic to an RGB model or RGB to a CFA model."""
        name = self.opts.name
        if not image.encoding.cfa:
            raise RestoreError(f"model {name!r} takes a raw CFA mosaic, not {image.encoding} RGB: "
                               "start the pipeline with develop: {output: cfa}")
        if want != "cfa-packed":
            raise RestoreError(f"model {name!r} takes RGB ({want}), not a raw CFA mosaic: develop to RGB first")
        from ...models.cfa import encode_for_model

        planes, back = encode_for_model(image, name)
        return planes, back, image.encoding

    def _run(self, hwc: np.ndarray, ctx: Context) -> np.ndarray:
        """The model over model-space pixels ``(H, W, C)`` (:func:`restore.pipeline.model_run.run_model`)."""
        return run_model(self.model, hwc, self.run_options, ctx=ctx, state=self.run_state, label=self.opts.name)

    def __call__(self, image: Image, ctx: Context) -> Image:
        self.prepare()
        px, back, enc, exposed = self._encode(image)
        blend = float(self.opts.blend)
        if blend > 0:
            # side inputs computed from the whole image (a noise profile, a noise level), if any
            self.model.bind_image(image, px, self.opts.model_dump())
        y = self._run(px, ctx) if blend > 0 else None
        if y is not None and self.model.info.output_range != "unbounded":
            y = np.clip(y, 0.0, 1.0)
        guard = self.guard_exposed if exposed and self.guard_exposed is not None else self.guard
        if y is not None and guard is not None and y.shape == px.shape and px.shape[2] == 3:
            from ...guard import apply_guard

            y, w = apply_guard(guard, px, y)
            if w < guard.min_share:
                ctx.notes.append(f"guard: left the image unchanged (it would keep {w:.1%} of the model's change, "
                                 f"under its gate {guard.min_share:.1%})")
            else:
                ctx.notes.append(f"guard: kept {w:.0%} of the model's change")
        if blend < 1:
            y = blend_with_input(y, px, self.model.scale, blend)
        y = back(y)
        if image.alpha is not None:
            s = self.model.scale
            a = image.alpha
            if self.opts.alpha == "model" and self.model.input_channels == 3:
                a_up = self._run(np.repeat(a, 3, axis=2), ctx).mean(axis=2, keepdims=True)
            elif s == 1:
                a_up = a
            else:
                a_up = cv2.resize(a[:, :, 0], (a.shape[1] * s, a.shape[0] * s), interpolation=cv2.INTER_LANCZOS4)[:, :, None]
            y = np.concatenate([y, np.clip(a_up, 0, 1)], axis=2)
        return image.with_pixels(y, enc)
