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
from pydantic import Field, ValidationError, field_validator, model_validator

from ..errors import PipelineError
from . import steps as _steps  # noqa: F401 - importing the package registers every step
from .options import Reference, _Strict
from .registry import STACK_STEPS, STEP_NAMES, STEP_TYPES, registered_steps, step_info
from .steps.write import TEMPLATE_FIELDS

# Also every registered step's wrapper and options model (``ModelStep``, ``ModelOptions`` ...) and ``Step``,
# looked up in the registry by the module's ``__getattr__``.
__all__ = [
    "PipelineSpec",
    "GroupOptions",
    "InputOptions",
    "STEP_TYPES",
    "STEP_NAMES",
    "STACK_STEPS",
    "TEMPLATE_FIELDS",
    "Reference",
    "parse_pipeline",
]

SCHEMA_VERSION = 1

_FIRST_STEP = " must be the first step"


def __getattr__(name: str):
    """Every registered step's wrapper (``ModelStep``) and options model (``ModelOptions``), and ``Step``
    (the union of the wrappers), read from the registry (:mod:`restore.pipeline.registry`)."""
    if name == "Step":
        return Union[tuple(STEP_TYPES.values())]
    for info in registered_steps():
        if name == info.wrapper.__name__:
            return info.wrapper
        if name == info.options.__name__:
            return info.options
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


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
        """Each step validated by its registered wrapper, then the placement rules the registry declares:
        ``first`` steps first, stack steps only with ``input.group``, a grouped pipeline reduced by a merge or
        fuse (``reduces``), other stack steps before it and ``single_image`` steps after it."""
        typed = [STEP_TYPES[next(iter(s))].model_validate(s) if isinstance(s, dict) else s for s in self.steps]
        object.__setattr__(self, "steps", typed)
        infos = [step_info(s) for s in typed]
        names = [i.name for i in infos]
        for first in dict.fromkeys(i.name for i in infos if i.first):
            if names.index(first) != 0:
                raise ValueError(f"{first}{_FIRST_STEP}")
        stack = [i for i, info in enumerate(infos) if info.stack]
        if stack and self.input.group is None:
            raise ValueError(f"{names[stack[0]]} works on exposure brackets: set input.group (e.g. group: {{by: exposure-sequence}})")
        if self.input.group is not None:
            reducing = [i.name for i in registered_steps() if i.reduces]
            reducers = [i for i, info in enumerate(infos) if info.reduces]
            if not reducers:
                raise ValueError(f"a pipeline with input.group needs a {' or '.join(reducing)} step")
            first = reducers[0]
            for i, info in enumerate(infos):
                if info.stack and not info.reduces and i > first:
                    raise ValueError(f"{info.name} must come before {'/'.join(reducing)}")
                if info.single_image and i < first:
                    raise ValueError(f"{info.name} must come after {'/'.join(reducing)} (a bracket is not one image yet)")
        return self


# --------------------------------------------------------------------------- errors with line numbers



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
            if err["msg"].endswith(_FIRST_STEP):
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
    """Every model a step names (its registered ``model_option``) must be in the catalogue or an existing
    checkpoint file."""
    from ..models.catalog import unknown_model

    out = []
    for i, step in enumerate(steps):
        if not isinstance(step, dict) or len(step) != 1:
            continue
        kind, opts = next(iter(step.items()))
        field = step_info(kind).model_option if kind in STEP_TYPES else None
        model = opts.get(field) if isinstance(opts, dict) and field else None
        if not isinstance(model, str):
            continue
        key = ("steps", i, kind, field)
        problem = unknown_model(model)
        if problem:
            out.append(f"{name}{where(key)}: {_fmt_loc(key)}: {problem}")
    return out
