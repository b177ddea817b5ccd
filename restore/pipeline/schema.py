"""Pipeline files: a versioned YAML schema validated with pydantic.

Errors name the file, the line and the key::

    pipelines/bad.yaml:7: steps[1].model.tile: Input should be greater than or equal to 0

Version 1 layout::

    version: 1
    name: sr-x2
    input:
      patterns: ["*.png", "*.jpg"]        # optional filter for folder inputs
    steps:
      - develop: {white_balance: auto, demosaic: ahd, output: linear-rec709}
      - model: {name: dat-light-x2, tile: 256, overlap: 32, precision: auto}
      - resize: {scale: 0.5, filter: lanczos}
      - convert: {transfer: srgb, primaries: rec709}
      - exposure: {ev: 1.0}
      - write: {path: "{stem}_x2.png", bit_depth: 16}
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any, Literal, Union

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from ..errors import PipelineError

__all__ = [
    "PipelineSpec",
    "DevelopStep",
    "ModelStep",
    "ResizeStep",
    "ConvertStep",
    "ExposureStep",
    "WriteStep",
    "parse_pipeline",
]

SCHEMA_VERSION = 1


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    @model_validator(mode="before")
    @classmethod
    def _no_bool_numbers(cls, data):
        """YAML ``true`` is not a number: pydantic would take it as 1 for an int or float option."""
        if isinstance(data, dict):
            for k, v in data.items():
                f = cls.model_fields.get(k)
                if f is not None and isinstance(v, bool) and "bool" not in str(f.annotation):
                    raise ValueError(f"{k}: {str(v).lower()} is not a valid value")
        return data


_DEVICE = r"^(auto|cpu|mps|cuda(:[0-9]+)?)$"


def _device_syntax(v: str) -> str:
    import re

    if not re.match(_DEVICE, str(v)):
        raise ValueError(f"device {v!r}: use auto, cpu, cuda, cuda:N or mps")
    return v


class DevelopOptions(_Strict):
    """RAW development (ignored for non-RAW inputs except ``output``)."""

    white_balance: Union[Literal["auto", "camera", "daylight", "gray-world", "none"], list[float]] = "auto"
    demosaic: Literal["ahd", "dcb", "dht", "aahd", "vng", "ppg", "linear", "learned"] = "ahd"
    output: Literal["linear-rec709", "camera"] = "linear-rec709"
    half_size: bool = False

    @field_validator("white_balance")
    @classmethod
    def _multipliers(cls, v):
        import math

        if isinstance(v, list):
            if len(v) not in (3, 4):
                raise ValueError(f"white_balance multipliers: give 3 (R, G, B) or 4 (R, G, B, G2) numbers, not {len(v)}")
            bad = [x for x in v if not (math.isfinite(x) and 0 < x <= 100)]
            if bad:
                raise ValueError(f"white_balance multipliers must be finite numbers above 0 and at most 100, not {bad[0]!r}")
        return v


def _int_or_auto(v, minimum: int, what: str):
    """``v`` if it is ``"auto"`` or an int (not a bool) >= ``minimum``; else ValueError naming ``what``."""
    if v == "auto" or (isinstance(v, int) and not isinstance(v, bool) and v >= minimum):
        return v
    raise ValueError(f"must be {what} or auto, not {v!r}")


class ModelOptions(_Strict):
    """Run a restoration model tiled.

    ``tile`` 0 = whole image, ``auto`` = the largest tile whose memory, predicted
    by the model's memory curve (measured on first use, :mod:`restore.memory`),
    fits ``memory`` (default: 80 % of free GPU memory, or 25 % of available RAM
    up to 8 GiB); default 256.  Architectures whose descriptor
    discourages tiling - global attention - run on the whole image when its
    predicted peak memory fits that budget, else in the largest tiles that
    fit, with an overlap of at least 1/8 tile (unless ``tile`` is set
    explicitly); ``overlap`` in input pixels (default: the architecture's own); ``alpha``: how an alpha channel is upscaled
    (``resize`` = Lanczos, ``model`` = through the model as grey);
    ``hdr``: how linear values above 1 are encoded around a model trained on
    [0, 1] (``auto`` = the reversible peak-normalised log encoding of
    :func:`restore.color.hdr_encode` when the image exceeds 1, sRGB otherwise;
    ``log`` = always the log encoding; ``clip`` = clip to [0, 1], then sRGB);
    ``compile``: run the network through ``torch.compile`` (TorchInductor):
    the first run compiles for each tile shape (tens of seconds to minutes on
    a CPU), the compiled kernels are cached in ``~/.cache/restore/inductor``
    and reused by later runs; worth it for large batches, not for a few files.
    ``threads`` (CPU): intra-op threads; ``auto`` = the fastest count measured
    on a small tile at first use and cached per machine and model
    (:mod:`restore.threads`).
    """

    name: str
    tile: Union[int, str] = 256
    overlap: int | None = Field(None, ge=0)
    context: int | None = Field(None, ge=0)  # extra px per tile side, cropped away (default: the architecture's)
    memory: str | None = None  # budget for tile: auto, e.g. "4GB" (binary units)
    batch: int = Field(1, ge=1, le=64)
    precision: Literal["auto", "fp32", "fp16", "bf16"] = "auto"
    device: str = "auto"
    alpha: Literal["resize", "model"] = "resize"
    hdr: Literal["auto", "log", "clip"] = "auto"
    compile: bool = False
    threads: Union[int, Literal["auto"]] = "auto"

    @field_validator("device")
    @classmethod
    def _device_value(cls, v):
        return _device_syntax(v)
    vgg19: str | None = None  # ImageNet VGG19 weights (path) for models with a VGG hypercolumn input (RRFormer)

    @field_validator("threads", mode="before")
    @classmethod
    def _threads_value(cls, v):
        return _int_or_auto(v, 1, "a thread count >= 1")

    @field_validator("tile", mode="before")
    @classmethod
    def _tile_value(cls, v):
        return _int_or_auto(v, 0, "a tile edge in pixels >= 0 (0 = whole image)")

    @model_validator(mode="after")
    def _overlap_below_tile(self):
        if isinstance(self.tile, int) and self.tile and self.overlap is not None and self.overlap * 2 >= self.tile:
            raise ValueError(f"overlap ({self.overlap}) must be less than half the tile ({self.tile})")
        if self.memory is not None:
            from ..memory import parse_bytes

            if parse_bytes(self.memory) <= 0:
                raise ValueError("memory must be positive")
        return self


class ResizeOptions(_Strict):
    """Resize by a factor or to a size (pixels); filtering in linear light unless ``linear: false``."""

    scale: float | None = Field(None, gt=0, le=16)
    width: int | None = Field(None, gt=0, le=100_000)
    height: int | None = Field(None, gt=0, le=100_000)
    filter: Literal["lanczos", "bicubic", "bilinear", "area", "nearest"] = "lanczos"
    linear: bool = True

    @model_validator(mode="after")
    def _one_target(self):
        if self.scale is None and self.width is None and self.height is None:
            raise ValueError("give scale, or width and/or height")
        if self.scale is not None and (self.width or self.height):
            raise ValueError("give either scale or width/height, not both")
        return self


class ConvertOptions(_Strict):
    """Change the colour encoding (``referred`` changes only with a tone-mapping stage)."""

    transfer: Literal["linear", "srgb"] | None = None
    primaries: Literal["rec709", "rec2020", "ap0", "ap1", "xyz"] | None = None


class ExposureOptions(_Strict):
    """Exposure compensation in stops (EV) on linear light."""

    ev: float = Field(..., ge=-20, le=20)


#: The fields a write template may use (see :class:`WriteOptions`).
TEMPLATE_FIELDS = ("stem", "name", "suffix", "parent", "dir", "index", "pipeline", "group")


class WriteOptions(_Strict):
    """Write the current image.

    ``path``: template relative to the output folder; fields ``{stem}``
    (input name without suffix), ``{name}``, ``{suffix}`` (the input's
    extension without the dot), ``{parent}`` (input folder name), ``{dir}``
    (the input's folder relative to the input folder; outputs mirror it
    unless the template places it), ``{index}`` (position in the batch),
    ``{pipeline}``, ``{group}`` (brackets).  Fields take no format specs.  The
    format comes from the extension.  Templates may not be absolute or leave
    the output folder.
    """

    path: str
    bit_depth: Literal[8, 16, 32] | None = None
    dtype: Literal["half", "float"] = "half"
    compression: str | None = None
    quality: int = Field(95, ge=1, le=100)

    @field_validator("path")
    @classmethod
    def _safe_template(cls, v: str) -> str:
        from ..io import WRITE_SUFFIXES

        if not v.strip():
            raise ValueError("empty path template")
        if any(ord(c) < 32 or ord(c) == 127 for c in v):
            raise ValueError("path template contains a control character (a NUL, a newline ...)")
        p = Path(v)
        if p.is_absolute() or v.startswith(("/", "\\")) or (len(v) > 1 and v[1] == ":"):
            raise ValueError("path template must be relative to the output folder")
        if ".." in p.parts:
            raise ValueError("path template may not contain '..'")
        if p.suffix.lower() not in WRITE_SUFFIXES:
            raise ValueError(f"unsupported output extension {p.suffix!r}; use one of {sorted(WRITE_SUFFIXES)}")
        import string

        try:
            parts = list(string.Formatter().parse(v))
        except ValueError as e:
            raise ValueError(f"bad template: {e} (write a literal brace as {{{{ or }}}})") from None
        for _, fname, spec, conv in parts:
            if fname is None:
                continue
            if fname not in TEMPLATE_FIELDS:
                raise ValueError(f"unknown template field {{{fname}}}; known: {', '.join(TEMPLATE_FIELDS)}")
            if spec or conv:
                raise ValueError(f"template field {{{fname}}} takes no format spec or conversion")
        return v

    @model_validator(mode="after")
    def _options_fit_the_format(self):
        from ..io import write_option_problems

        given = {k: getattr(self, k) for k in sorted(self.model_fields_set - {"path"})}
        problems = write_option_problems(Path(self.path).suffix, given)
        if problems:
            raise ValueError("; ".join(problems))
        return self


Reference = Union[Literal["middle", "shortest", "longest"], int]


class AlignOptions(_Strict):
    """Align a bracket to its reference frame: ``mtb`` (Ward 2003 translation) or ``ecc`` (Evangelidis 2008)."""

    method: Literal["mtb", "ecc", "none"] = "mtb"
    reference: Reference = "middle"
    motion: Literal["translation", "euclidean", "affine", "homography"] = "homography"
    max_bits: int = Field(6, ge=1, le=10)


class MergeOptions(_Strict):
    """Merge a bracket to linear scene-referred radiance.

    ``method``: ``debevec`` / ``robertson`` (LDR: response-curve recovery then
    a weighted merge), ``raw-linear`` (linear frames, e.g. developed RAW:
    noise/saturation weights, exposure time x ISO normalisation), ``model``
    (HDR-Transformer / SCTNet checkpoint in ``model``; three exposures).
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
    precision: Literal["auto", "fp32", "fp16", "bf16"] = "auto"
    device: str = "auto"

    @field_validator("device")
    @classmethod
    def _device_value(cls, v):
        return _device_syntax(v)

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


class FuseOptions(_Strict):
    """Mertens-Kautz-Van Reeth exposure fusion weights."""

    contrast: float = Field(1.0, ge=0)
    saturation: float = Field(1.0, ge=0)
    exposure: float = Field(1.0, ge=0)


class TonemapOptions(_Strict):
    """Tone map linear radiance to a display image (sRGB-encoded, [0, 1]).

    ``params`` go to the operator: reinhard/reinhard-local ``key``, ``white``,
    ``phi``, ``eps``, ``saturation``; drago ``bias``, ``saturation``; mantiuk
    ``scale``, ``saturation``; aces ``exposure`` (EV).
    """

    operator: Literal["reinhard", "reinhard-local", "drago", "mantiuk", "aces"] = "reinhard"
    params: dict[str, float] = Field(default_factory=dict)


class DenoiseOptions(_Strict):
    """Denoise linear HDR radiance with Intel Open Image Denoise (``pyoidn``)."""

    method: Literal["oidn"] = "oidn"


class AlignStep(_Strict):
    align: AlignOptions = AlignOptions()


class MergeStep(_Strict):
    merge: MergeOptions = MergeOptions()


class FuseStep(_Strict):
    fuse: FuseOptions = FuseOptions()


class TonemapStep(_Strict):
    tonemap: TonemapOptions = TonemapOptions()


class DenoiseStep(_Strict):
    denoise: DenoiseOptions = DenoiseOptions()


class DevelopStep(_Strict):
    develop: DevelopOptions = DevelopOptions()


class ModelStep(_Strict):
    model: ModelOptions


class ResizeStep(_Strict):
    resize: ResizeOptions


class ConvertStep(_Strict):
    convert: ConvertOptions


class ExposureStep(_Strict):
    exposure: ExposureOptions


class WriteStep(_Strict):
    write: WriteOptions


Step = Union[DevelopStep, ModelStep, ResizeStep, ConvertStep, ExposureStep, WriteStep, AlignStep, MergeStep, FuseStep, TonemapStep, DenoiseStep]
STEP_TYPES: dict[str, type[_Strict]] = {
    "develop": DevelopStep,
    "model": ModelStep,
    "resize": ResizeStep,
    "convert": ConvertStep,
    "exposure": ExposureStep,
    "align": AlignStep,
    "merge": MergeStep,
    "fuse": FuseStep,
    "tonemap": TonemapStep,
    "denoise": DenoiseStep,
    "write": WriteStep,
}
#: Steps that take a whole bracket (list of frames); merge and fuse turn it into one image.
STACK_STEPS = (AlignStep, MergeStep, FuseStep)


class GroupOptions(_Strict):
    """How input files become exposure brackets (see :func:`restore.hdr.group.group_brackets`)."""

    by: Literal["exposure-sequence", "size", "time-gap", "ev-bias", "all"] = "exposure-sequence"
    size: int | None = Field(None, ge=2)
    time_gap_s: float = Field(2.0, gt=0)

    @model_validator(mode="after")
    def _size_needed(self):
        if self.by == "size" and self.size is None:
            raise ValueError("group by size needs size: N")
        return self


class InputOptions(_Strict):
    """Which files, and (for HDR) how they form brackets.

    ``exposure_times``: seconds per file name, or the path of a CSV
    (``filename,exposure_time_s``) relative to the input folder; overrides and
    fills in the files' own metadata.
    """

    patterns: list[str] = Field(default_factory=list)
    recursive: bool = False
    group: GroupOptions | None = None
    exposure_times: dict[str, float] | str | None = None


class PipelineSpec(_Strict):
    """A validated pipeline definition."""

    version: Literal[1]
    name: str = "pipeline"
    description: str = ""
    input: InputOptions = InputOptions()
    steps: list[Annotated[Any, Field()]]

    @field_validator("steps", mode="before")
    @classmethod
    def _parse_steps(cls, steps):
        if not isinstance(steps, list) or not steps:
            raise ValueError("steps must be a non-empty list")
        out = []
        for i, s in enumerate(steps):
            if isinstance(s, str):
                s = {s: {}}
            if not isinstance(s, dict) or len(s) != 1:
                raise ValueError(f"step {i} must be a mapping with exactly one key (one of {', '.join(STEP_TYPES)})")
            (kind,) = s
            if kind not in STEP_TYPES:
                raise ValueError(f"step {i}: unknown step {kind!r}; known: {', '.join(STEP_TYPES)}")
            out.append(s if s[kind] is not None else {kind: {}})
        return out

    @model_validator(mode="after")
    def _typed(self):
        typed = [STEP_TYPES[next(iter(s))].model_validate(s) if isinstance(s, dict) else s for s in self.steps]
        object.__setattr__(self, "steps", typed)
        kinds = [type(s) for s in typed]
        if DevelopStep in kinds and kinds.index(DevelopStep) != 0:
            raise ValueError("develop must be the first step")
        stack = [i for i, k in enumerate(kinds) if k in STACK_STEPS]
        if stack and self.input.group is None:
            raise ValueError(f"{STEP_NAMES[kinds[stack[0]]]} works on exposure brackets: set input.group (e.g. group: {{by: exposure-sequence}})")
        if self.input.group is not None:
            reducers = [i for i, k in enumerate(kinds) if k in (MergeStep, FuseStep)]
            if not reducers:
                raise ValueError("a pipeline with input.group needs a merge or fuse step")
            first = reducers[0]
            for i, k in enumerate(kinds):
                if k is AlignStep and i > first:
                    raise ValueError("align must come before merge/fuse")
                if k is WriteStep and i < first:
                    raise ValueError("write must come after merge/fuse (a bracket is not one image yet)")
        return self


# --------------------------------------------------------------------------- errors with line numbers


STEP_NAMES = {v: k for k, v in STEP_TYPES.items()}


def _node_at(node: yaml.Node | None, loc: tuple) -> yaml.Node | None:
    """Walk a composed YAML node tree along a pydantic error location."""
    for part in loc:
        if node is None:
            return None
        if isinstance(node, yaml.MappingNode):
            nxt = None
            for k, v in node.value:
                if k.value == part:
                    nxt = v
                    break
            if nxt is None:
                return node
            node = nxt
        elif isinstance(node, yaml.SequenceNode) and isinstance(part, int):
            if part >= len(node.value):
                return node
            node = node.value[part]
        else:
            return node
    return node


def _fmt_loc(loc: tuple) -> str:
    out = ""
    for part in loc:
        if isinstance(part, int):
            out += f"[{part}]"
        elif part in STEP_TYPES.values() or str(part).endswith("Step"):
            continue
        else:
            out += ("." if out else "") + str(part)
    return out or "(top level)"


def _decode(path: Path, data: bytes) -> str:
    """A pipeline file's text: UTF-8 (with or without BOM), or UTF-16/32 with a BOM (YAML 1.2 allows those).

    Raises:
        PipelineError: other encodings (Latin-1 ...), naming the line and the byte.
    """
    import codecs

    for bom, enc in ((codecs.BOM_UTF32_LE, "utf-32"), (codecs.BOM_UTF32_BE, "utf-32"), (codecs.BOM_UTF8, "utf-8-sig"),
                     (codecs.BOM_UTF16_LE, "utf-16"), (codecs.BOM_UTF16_BE, "utf-16")):
        if data.startswith(bom):
            try:
                return data.decode(enc)
            except UnicodeDecodeError:
                break
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as e:
        line = data[: e.start].count(b"\n") + 1
        raise PipelineError(f"{path}:{line}: not UTF-8 text (byte 0x{data[e.start]:02x}); save the pipeline file as UTF-8") from None


def parse_pipeline(source: str | Path | dict, *, origin: str | None = None) -> PipelineSpec:
    """Load and validate a pipeline from a YAML file, YAML text or a dict.

    Args:
        source: Path to a ``.yaml`` file, YAML text, or an already parsed dict.
        origin: Name used in error messages for text/dict sources.

    Returns:
        :class:`PipelineSpec`.

    Raises:
        PipelineError: unreadable file (or not UTF-8/16/32 text), invalid YAML, nesting too deep, or
            schema violations, each as ``file:line: key: problem`` (all of them, in one message).
    """
    try:
        return _parse(source, origin)
    except RecursionError:
        name = origin or (str(source) if isinstance(source, Path) or (isinstance(source, str) and "\n" not in source) else "<pipeline>")
        raise PipelineError(f"{name}: nested too deeply to be a pipeline") from None


def _parse(source, origin) -> PipelineSpec:
    node = None
    if isinstance(source, dict):
        data, name = source, origin or "<dict>"
    else:
        text, name = None, origin
        if isinstance(source, Path) or (isinstance(source, str) and "\n" not in source and source.endswith((".yaml", ".yml"))):
            p = Path(source)
            name = name or str(p)
            try:
                text = _decode(p, p.read_bytes())
            except OSError as e:
                raise PipelineError(f"{p}: cannot read pipeline ({e.strerror or e})") from None
        else:
            text, name = str(source), name or "<string>"
        try:
            node = yaml.compose(text, Loader=yaml.SafeLoader)
            data = yaml.safe_load(text)
        except yaml.YAMLError as e:
            mark = getattr(e, "problem_mark", None)
            where = f":{mark.line + 1}" if mark else ""
            raise PipelineError(f"{name}{where}: invalid YAML: {getattr(e, 'problem', None) or e}") from None
    if not isinstance(data, dict):
        raise PipelineError(f"{name}: a pipeline must be a mapping with version and steps")
    if "version" in data and (type(data["version"]) is not int or data["version"] != SCHEMA_VERSION):
        line = _node_at(node, ("version",))
        where = f":{line.start_mark.line + 1}" if line is not None else ""
        raise PipelineError(f"{name}{where}: version: unsupported pipeline version {data['version']!r} (this restore reads version {SCHEMA_VERSION})")
    def where(loc: tuple) -> str:
        n = _node_at(node, loc)
        return f":{n.start_mark.line + 1}" if n is not None else ""

    def lines_of(e: ValidationError, prefix: tuple = ()) -> list[str]:
        out = []
        for err in e.errors():
            loc = prefix + tuple(p for p in err["loc"] if not (isinstance(p, str) and p.endswith("Step")))
            if err["msg"].endswith("develop must be the first step"):
                loc = ("steps",)
            msg = err["msg"].removeprefix("Value error, ")
            out.append(f"{name}{where(loc)}: {_fmt_loc(loc)}: {msg}")
        return out

    problems: list[str] = []
    steps = data.get("steps")
    bad_steps: set[int] = set()
    if isinstance(steps, list):  # validate step by step so errors carry steps[i] and its line
        for i, s in enumerate(steps):
            if isinstance(s, dict) and len(s) == 1 and next(iter(s)) in STEP_TYPES:
                kind = next(iter(s))
                try:
                    STEP_TYPES[kind].model_validate({kind: s[kind] if s[kind] is not None else {}})
                except ValidationError as e:
                    problems += lines_of(e, ("steps", i))
                    bad_steps.add(i)
    spec = None
    try:
        spec = PipelineSpec.model_validate(data)
    except ValidationError as e:
        # the steps already reported are validated again inside the spec: report the rest
        for line, err in zip(lines_of(e), e.errors()):
            loc = err["loc"]
            if bad_steps and (not loc or loc[0] == "steps" or loc[0] in STEP_TYPES or str(loc[0]).endswith("Step")):
                continue
            problems.append(line)
    if isinstance(steps, list):
        problems += _model_name_problems(steps, name, where)
    if problems:
        more = f" ({len(problems)} problems)" if len(problems) > 1 else ""
        raise PipelineError(("\n" + " " * 2).join([problems[0] + more] + problems[1:]) if len(problems) > 1 else problems[0])
    return spec


def _model_name_problems(steps: list, name: str, where) -> list[str]:
    """Every model a step names must be in the catalogue or an existing checkpoint file."""
    from ..models.catalog import unknown_model

    out = []
    for i, step in enumerate(steps):
        if not isinstance(step, dict) or len(step) != 1:
            continue
        kind, opts = next(iter(step.items()))
        field = {"model": "name", "merge": "model"}.get(kind)
        model = opts.get(field) if isinstance(opts, dict) and field else None
        if not isinstance(model, str):
            continue
        key = ("steps", i, kind, field)
        problem = unknown_model(model)
        if problem:
            out.append(f"{name}{where(key)}: {_fmt_loc(key)}: {problem}")
    return out
