"""``merge``: merge a bracket to linear scene-referred radiance (classical merges or a network)."""

from __future__ import annotations

from dataclasses import replace
from typing import Literal

import numpy as np
from pydantic import Field, field_validator, model_validator

from ... import color
from ...errors import RestoreError
from ...image import LINEAR_REC709, Encoding, Image
from ..base import Context, Stage
from ..brackets import (
    display_pixels,
    exposure_times,
    reference_index,
    relative_exposures,
)
from ..model_run import RunOptions, RunState, run_model
from ..options import Precision, Reference, _Strict, device_syntax
from ..registry import register_step

__all__ = ["MergeOptions", "MergeStage"]


class MergeOptions(_Strict):
    """Merge a bracket to linear scene-referred radiance.

    ``method``: ``debevec`` / ``robertson`` (LDR: response-curve recovery then
    a weighted merge), ``raw-linear`` (linear frames, e.g. developed RAW:
    noise/saturation weights, exposure time x ISO normalisation), ``model``
    (a three-exposure HDR merge network: checkpoint path or catalogue name in
    ``model``; run like the model step, :mod:`restore.pipeline.model_run`).
    ``deghost`` takes pixels inconsistent across exposures from the
    ``reference`` frame.  The result is scaled to the reference exposure.
    """

    method: Literal["debevec", "robertson", "raw-linear", "model"] | None = None
    model: str | None = None
    deghost: bool = False
    # LDR merges: "snr" down-weights codes where the response is steep (film toe/shoulder); "hat" is the paper's.
    weighting: Literal["hat", "snr"] = "snr"
    smoothness: float = Field(100.0, gt=0)  # Debevec's lambda
    reference: Reference = "middle"
    clip: float = Field(0.98, gt=0.5, le=1.0)
    tile: int = Field(256, ge=0)
    overlap: int | None = Field(None, ge=0)
    precision: Precision = "auto"
    device: str = "auto"

    @field_validator("device")
    @classmethod
    def _device_value(cls, v):
        return device_syntax(v)

    @model_validator(mode="after")
    def _method(self):
        method = self.method or ("model" if self.model else "debevec")
        if method == "model" and not self.model:
            raise ValueError("method model needs model: <checkpoint path or catalogue name>")
        if self.model and method != "model":
            raise ValueError(f"model is only used with method: model (got method {method})")
        network_only = sorted({"tile", "overlap", "precision", "device"} & self.model_fields_set)
        if network_only and method != "model":
            raise ValueError(f"{', '.join(network_only)} only apply to method: model (got method {method})")
        object.__setattr__(self, "method", method)
        return self



@register_step("merge", options=MergeOptions, reduces=True, model_option="model", order=70)
class MergeStage(Stage):
    """Merge a bracket to linear, scene-referred Rec.709 radiance scaled to the reference exposure."""

    kind = "merge"
    stack = True

    def __init__(self, opts: MergeOptions):
        self.opts = opts
        self.model = None
        self.run_options = RunOptions.from_options(opts)
        self.run_state = RunState()

    def prepare(self) -> None:
        """Load the merge network (method ``model``) once.

        Raises:
            RestoreError: the model is not a three-exposure HDR merge network; ModelError: it cannot be loaded.
        """
        if self.opts.method == "model" and self.model is None:
            from ...models import load_model

            m = load_model(self.opts.model)
            if m.info.frames != 3 or m.info.input_encoding != "hdr-ldr-pair":
                raise RestoreError(f"merge model {self.opts.model!r} is {m.arch} ({m.info.task}), not a 3-exposure HDR merge network")
            self.model = m

    def __call__(self, frames: list[Image], ctx: Context) -> Image:
        if len(frames) < 2:
            raise RestoreError("merge needs at least 2 exposures")
        ref = reference_index(frames, self.opts.reference)
        method = self.opts.method
        linear = all(f.encoding.transfer == "linear" for f in frames)
        if method == "raw-linear":
            from ...hdr.merge import merge_linear

            if not linear:
                raise RestoreError("raw-linear merge needs linear frames (RAW files, or EXR); use debevec for PNG/JPEG brackets")
            cols = [color.convert(f, Encoding("linear", "rec709", "scene")).color if f.encoding.primaries not in ("rec709", "camera") else f.color for f in frames]
            rad = merge_linear(cols, relative_exposures(frames), clip=self.opts.clip, deghost=self.opts.deghost, reference=ref)
            enc = Encoding("linear", frames[0].encoding.primaries if frames[0].encoding.primaries == "camera" else "rec709", "scene")
        elif method in ("debevec", "robertson"):
            from ...hdr.merge import merge_ldr, recover_response

            if linear:
                raise RestoreError(f"{method} recovers a camera response from display-referred frames; these are linear: use method raw-linear")
            disp = [display_pixels(f) for f in frames]
            u8 = [np.floor(d * 255 + 0.5).astype(np.uint8) for d in disp]
            times = exposure_times(frames)
            response = recover_response(u8, times, method=method, smoothness=self.opts.smoothness)
            rad = merge_ldr(disp, times, response, deghost=self.opts.deghost, reference=ref, weighting=self.opts.weighting)
            enc = LINEAR_REC709
        else:
            rad = self._network(frames, ctx)
            enc = LINEAR_REC709
        meta = replace(frames[ref].meta, extra={**frames[ref].meta.extra, "merge": {"method": method, "frames": len(frames), "reference": ref}})
        return Image(np.ascontiguousarray(rad, dtype=np.float32), enc, meta)

    def _network(self, frames: list[Image], ctx: Context) -> np.ndarray:
        """Three exposures through the merge network (:func:`restore.pipeline.model_run.run_model` on the
        inputs of :func:`restore.hdr.network.network_inputs`): RGB radiance scaled to the middle exposure."""
        from ...hdr.network import network_inputs

        self.prepare()
        if len(frames) != 3:
            order = np.argsort(exposure_times(frames))
            frames = [frames[order[0]], frames[order[len(order) // 2]], frames[order[-1]]]
            ctx.notes.append("network merge: used the shortest, middle and longest of the bracket")
        x, t_ref = network_inputs([display_pixels(f) for f in frames], exposure_times(frames))
        y = run_model(self.model, x, self.run_options, ctx=ctx, state=self.run_state, layout="chw", label=self.opts.model)
        # the network's output: BGR radiance in units of the short exposure -> RGB, reference units
        # (as restore.hdr.network.merge_network)
        return np.ascontiguousarray(y[::-1].transpose(1, 2, 0) * t_ref, dtype=np.float32)
