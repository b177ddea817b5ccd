"""The step registry: every pipeline step declares itself here, once.

A step is one module in :mod:`restore.pipeline.steps` (found there automatically) that defines its
options model and its stage and registers them::

    from pydantic import Field

    from ..base import Context, Stage
    from ..options import _Strict
    from ..registry import register_step


    class BlurOptions(_Strict):
        sigma: float = Field(1.0, gt=0)


    @register_step("blur", options=BlurOptions)
    class BlurStage(Stage):
        kind = "blur"

        def __init__(self, opts: BlurOptions):
            self.opts = opts

        def __call__(self, image, ctx: Context):
            ...

Everything else is derived from the registry: the ``{blur: {...}}`` wrapper model
(:data:`STEP_TYPES`), the names (:data:`STEP_NAMES`), the bracket steps (:data:`STACK_STEPS`), YAML
validation with line numbers (:func:`restore.pipeline.schema.parse_pipeline`) and the stages
(:func:`build_stage`).
"""

from __future__ import annotations

import re
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Callable, Iterator

from pydantic import BaseModel, ValidationError, create_model

from .options import _Strict

__all__ = [
    "StepInfo",
    "register_step",
    "unregister_step",
    "registered_steps",
    "step_info",
    "build_stage",
    "STEP_TYPES",
    "STEP_NAMES",
    "STACK_STEPS",
]

_NAME = re.compile(r"^[a-z][a-z0-9_]*$")

#: Where a step without an ``order`` goes in listings: after the built-in image steps, before ``write``.
DEFAULT_ORDER = 500


@dataclass(frozen=True)
class StepInfo:
    """One registered step.

    Attributes:
        name: The YAML key (``model``, ``resize`` ...).
        options: Its options model (a :class:`~restore.pipeline.options._Strict` subclass).
        stage: Builds the stage from a validated options object: usually the
            :class:`~restore.pipeline.base.Stage` subclass itself.
        wrapper: The ``{name: options}`` model a pipeline's ``steps`` entry validates against
            (named ``<Name>Step``; its single field is named like the step).
        stack: The step takes a whole bracket (``list[Image]``), not one image.
        reduces: A stack step that turns the bracket into one image (merge, fuse).
        first: The step must be the pipeline's first (develop: the reader applies it).
        single_image: In a grouped pipeline the step must come after the bracket became one image
            (write).
        model_option: The option naming a catalogue model or checkpoint, checked against the
            catalogue when the pipeline is validated (``name`` of ``model``).
        order: Position in listings (``known: ...`` in errors, documentation).
        module: The module that registered the step.
    """

    name: str
    options: type[BaseModel]
    stage: Callable[[Any], Any]
    wrapper: type[BaseModel]
    stack: bool = False
    reduces: bool = False
    first: bool = False
    single_image: bool = False
    model_option: str | None = None
    order: int = DEFAULT_ORDER
    module: str = ""

    def build(self, step: BaseModel):
        """The stage for a validated wrapper instance (``ModelStep(model=...)``) or options object."""
        opts = getattr(step, self.name) if isinstance(step, self.wrapper) else step
        return self.stage(opts)


_REGISTRY: dict[str, StepInfo] = {}
_SEQ: dict[str, int] = {}

#: Step name -> its wrapper model (``{"model": ModelStep, ...}``), in listing order; kept in sync with
#: the registry (the same dict object, updated in place).
STEP_TYPES: dict[str, type[BaseModel]] = {}

#: Wrapper model -> step name (the inverse of :data:`STEP_TYPES`), kept in sync likewise.
STEP_NAMES: dict[type[BaseModel], str] = {}


class _StackSteps(Sequence):
    """The wrapper models of the steps that take a whole bracket, read live from the registry."""

    def _items(self) -> tuple:
        return tuple(i.wrapper for i in registered_steps() if i.stack)

    def __getitem__(self, i):
        return self._items()[i]

    def __len__(self) -> int:
        return len(self._items())

    def __iter__(self) -> Iterator[type[BaseModel]]:
        return iter(self._items())

    def __repr__(self) -> str:
        return repr(self._items())


#: Wrapper models of the steps that take a whole bracket (align, merge, fuse): a live, read-only sequence.
STACK_STEPS: Sequence[type[BaseModel]] = _StackSteps()


def _wrapper_name(name: str) -> str:
    return "".join(p.capitalize() for p in name.split("_")) + "Step"


def _default(options: type[BaseModel]):
    """The options object a bare ``- name`` step gets, or ``...`` (required) when options have required fields."""
    try:
        return options()
    except ValidationError:
        return ...


def _sync() -> None:
    ordered = registered_steps()
    STEP_TYPES.clear()
    STEP_TYPES.update((i.name, i.wrapper) for i in ordered)
    STEP_NAMES.clear()
    STEP_NAMES.update((i.wrapper, i.name) for i in ordered)


def register_step(
    name: str,
    *,
    options: type[BaseModel],
    stage: Callable[[Any], Any] | None = None,
    stack: bool | None = None,
    reduces: bool = False,
    first: bool = False,
    single_image: bool = False,
    model_option: str | None = None,
    order: int = DEFAULT_ORDER,
):
    """Register a pipeline step.

    Call it with ``stage=`` (returns the :class:`StepInfo`) or use it as a class decorator on the stage
    (returns the class unchanged)::

        @register_step("blur", options=BlurOptions)
        class BlurStage(Stage): ...

    Args:
        name: The YAML key: lower case letters, digits and ``_``, starting with a letter.
        options: The options model (subclass :class:`~restore.pipeline.options._Strict`, so unknown
            keys are errors).  Steps whose options all have defaults may be written bare (``- name``).
        stage: Builds the stage from an options object (the stage class).
        stack: The step takes a whole bracket; default: the stage class's ``stack`` attribute.
        reduces, first, single_image, model_option, order: see :class:`StepInfo`.

    Returns:
        The :class:`StepInfo` (or, as a decorator, the decorated class).

    Raises:
        ValueError: a bad name, a name another module registered already, options that are not a
            pydantic model, or ``stack`` contradicting the stage's own ``stack``.
    """
    if stage is None:
        def decorate(cls):
            register_step(name, options=options, stage=cls, stack=stack, reduces=reduces, first=first,
                          single_image=single_image, model_option=model_option, order=order)
            return cls

        return decorate
    if not isinstance(name, str) or not _NAME.match(name):
        raise ValueError(f"step name {name!r}: use lower case letters, digits and _, starting with a letter")
    if not (isinstance(options, type) and issubclass(options, BaseModel)):
        raise ValueError(f"step {name!r}: options must be a pydantic model class, not {options!r}")
    if not callable(stage):
        raise ValueError(f"step {name!r}: stage must be callable (the Stage class)")
    own = getattr(stage, "stack", None)
    if stack is None:
        stack = bool(own)
    elif isinstance(own, bool) and own != stack:
        raise ValueError(f"step {name!r}: stack={stack} but {getattr(stage, '__name__', stage)}.stack is {own}")
    if reduces and not stack:
        raise ValueError(f"step {name!r}: only a stack step can reduce a bracket")
    if model_option is not None and model_option not in options.model_fields:
        raise ValueError(f"step {name!r}: model_option {model_option!r} is not an option of {options.__name__}")
    module = getattr(stage, "__module__", "") or ""
    old = _REGISTRY.get(name)
    if old is not None and old.module != module:
        raise ValueError(f"step {name!r} is registered already (by {old.module})")
    wrapper = create_model(_wrapper_name(name), __base__=_Strict, __module__=module or __name__,
                           **{name: (options, _default(options))})
    wrapper.__doc__ = f"A ``{name}`` pipeline step: ``{{{name}: {{...}}}}`` (options: :class:`{options.__name__}`)."
    info = StepInfo(name=name, options=options, stage=stage, wrapper=wrapper, stack=bool(stack), reduces=reduces,
                    first=first, single_image=single_image, model_option=model_option, order=order, module=module)
    home = sys.modules.get(module)
    if home is not None:  # importable by name: pickled specs (worker processes, Ray) find the wrapper again
        setattr(home, wrapper.__name__, wrapper)
    _REGISTRY[name] = info
    _SEQ.setdefault(name, len(_SEQ))
    _sync()
    return info


def unregister_step(name: str) -> StepInfo:
    """Remove a step (tests, plugins being unloaded).

    Raises:
        KeyError: no such step.
    """
    info = _REGISTRY.pop(name)
    _SEQ.pop(name, None)
    home = sys.modules.get(info.module)
    if home is not None and getattr(home, info.wrapper.__name__, None) is info.wrapper:
        delattr(home, info.wrapper.__name__)
    _sync()
    return info


def registered_steps() -> list[StepInfo]:
    """Every registered step, in listing order (``order``, then registration)."""
    return sorted(_REGISTRY.values(), key=lambda i: (i.order, _SEQ[i.name]))


def step_info(key: str | type | BaseModel) -> StepInfo:
    """The :class:`StepInfo` for a step name, a wrapper model class or a wrapper instance.

    Raises:
        KeyError: not a registered step.
    """
    if isinstance(key, str):
        return _REGISTRY[key]
    cls = key if isinstance(key, type) else type(key)
    name = STEP_NAMES.get(cls)
    if name is None:
        raise KeyError(cls.__name__)
    return _REGISTRY[name]


def build_stage(step: BaseModel):
    """The stage for one validated step (an instance of a wrapper in :data:`STEP_TYPES`).

    Raises:
        KeyError: the step's type is not registered.
    """
    return step_info(step).build(step)
