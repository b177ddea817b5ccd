"""One registry per step (issue 18): a step is one module in ``restore/pipeline/steps/``; the YAML schema, the
line-numbered errors, the placement rules and the stages are all derived from the registry, and every model
run (model step, network merge, ``restore bench``) goes through ``restore.pipeline.model_run.run_model``."""

from __future__ import annotations

import pickle
import pkgutil
import sys
import typing

import numpy as np
import pytest

from restore.errors import PipelineError
from restore.image import SRGB, Image, Metadata
from restore.pipeline import load_pipeline, parse_pipeline, registry, schema, steps
from restore.pipeline.base import Context, Stage
from restore.pipeline.options import _Strict
from restore.pipeline.registry import (
    register_step,
    registered_steps,
    step_info,
    unregister_step,
)

TOY = '''
"""``toy``: multiply the pixels (a step added by adding this one module)."""

from __future__ import annotations

from pydantic import Field

from ..base import Context, Stage
from ..options import _Strict
from ..registry import register_step


class ToyOptions(_Strict):
    """Multiply by ``gain``."""

    gain: float = Field(1.0, gt=0, le=4)


@register_step("toy", options=ToyOptions)
class ToyStage(Stage):
    """Multiply by the gain."""

    kind = "toy"

    def __init__(self, opts: ToyOptions):
        self.opts = opts

    def __call__(self, image, ctx: Context):
        return image.with_pixels(image.pixels * self.opts.gain)
'''


@pytest.fixture
def toy_module(tmp_path, monkeypatch):
    """``toy.py`` dropped into the steps package's search path, discovered as the package discovers its own."""
    (tmp_path / "toy.py").write_text(TOY)
    monkeypatch.setattr(steps, "__path__", [*steps.__path__, str(tmp_path)])
    steps._discover()
    try:
        yield sys.modules["restore.pipeline.steps.toy"]
    finally:
        if "toy" in registry.STEP_TYPES:
            unregister_step("toy")
        sys.modules.pop("restore.pipeline.steps.toy", None)
        if hasattr(steps, "toy"):
            delattr(steps, "toy")


def test_every_builtin_step_is_one_module_with_options_and_a_stage():
    modules = sorted(m.name for m in pkgutil.iter_modules(steps.__path__) if not m.name.startswith("_"))
    assert sorted(registry.STEP_TYPES) == modules
    for info in registered_steps():
        assert info.module == f"restore.pipeline.steps.{info.name}"
        assert issubclass(info.options, _Strict) and isinstance(info.stage, type) and issubclass(info.stage, Stage)
        assert info.stage.kind == info.name and info.stage.stack == info.stack
        assert info.options.__module__ == info.module  # the options live next to their stage
        assert list(info.wrapper.model_fields) == [info.name]
        assert info.wrapper.model_fields[info.name].annotation is info.options


def test_the_schema_tables_are_derived_from_the_registry():
    infos = registered_steps()
    assert schema.STEP_TYPES is registry.STEP_TYPES
    assert list(schema.STEP_TYPES.items()) == [(i.name, i.wrapper) for i in infos]
    assert schema.STEP_NAMES == {i.wrapper: i.name for i in infos}
    assert tuple(schema.STACK_STEPS) == tuple(i.wrapper for i in infos if i.stack)
    assert [schema.STEP_NAMES[w] for w in schema.STACK_STEPS] == ["align", "merge", "fuse"]
    # the listing order of the error messages and the documentation is kept
    assert list(schema.STEP_TYPES) == ["develop", "model", "resize", "convert", "exposure", "align", "merge", "fuse",
                                       "tonemap", "denoise", "write"]
    assert set(typing.get_args(schema.Step)) == set(schema.STEP_TYPES.values())
    assert schema.ModelStep is schema.STEP_TYPES["model"] and schema.DenoiseOptions is step_info("denoise").options
    assert step_info(schema.ModelStep).name == "model" and step_info("merge").reduces
    with pytest.raises(AttributeError):
        schema.NoSuchStep  # noqa: B018


def test_adding_a_step_needs_its_module_only(toy_module, tmp_path):
    assert "toy" in schema.STEP_TYPES and list(schema.STEP_TYPES)[-2:] == ["toy", "write"]
    assert schema.ToyStep is toy_module.ToyStep and schema.ToyOptions is toy_module.ToyOptions
    text = "version: 1\nsteps:\n  - resize: {scale: 1}\n  - toy:\n      gain: 2\n"
    spec = parse_pipeline(text)
    assert type(spec.steps[1]).__name__ == "ToyStep" and spec.steps[1].toy.gain == 2
    assert pickle.loads(pickle.dumps(spec)) == spec  # worker processes get the spec pickled
    p = load_pipeline(text)
    assert type(p.stages[1]) is toy_module.ToyStage
    img = np.full((4, 6, 3), 0.25, np.float32)
    out = p.process(Image(img, SRGB, Metadata(bit_depth=8)), Context())
    assert np.allclose(out.pixels, 0.5)
    assert parse_pipeline("version: 1\nsteps: [toy]\n").steps[0].toy.gain == 1.0  # all defaults: may be bare
    # validation with line numbers, like every step
    with pytest.raises(PipelineError) as e:
        parse_pipeline("version: 1\nsteps:\n  - resize: {scale: 1}\n  - toy:\n      gain: -1\n      what: 3\n")
    lines = str(e.value).splitlines()
    assert lines[0].startswith("<string>:5: steps[1].toy.gain: Input should be greater than 0") and "(2 problems)" in lines[0]
    assert lines[1].strip() == "<string>:6: steps[1].toy.what: Extra inputs are not permitted"
    with pytest.raises(PipelineError, match=r"known: develop, .*, denoise, toy, write$"):
        parse_pipeline("version: 1\nsteps: [blur]\n")


def test_unregistering_removes_a_step_everywhere(toy_module):
    wrapper = schema.STEP_TYPES["toy"]
    unregister_step("toy")
    assert "toy" not in schema.STEP_TYPES and wrapper not in schema.STEP_NAMES and not hasattr(toy_module, "ToyStep")
    with pytest.raises(PipelineError, match="unknown step 'toy'"):
        parse_pipeline("version: 1\nsteps: [toy]\n")
    with pytest.raises(KeyError):
        step_info("toy")


def test_stack_steps_and_placement_rules_come_from_the_declarations():
    class StackOptions(_Strict):
        strength: float = 1.0

    class StackStage(Stage):
        kind = "toy_stack"
        stack = True

        def __init__(self, opts):
            self.opts = opts

        def __call__(self, frames, ctx):
            return frames

    register_step("toy_stack", options=StackOptions, stage=StackStage)
    try:
        assert schema.STEP_TYPES["toy_stack"] in schema.STACK_STEPS
        with pytest.raises(PipelineError, match="toy_stack works on exposure brackets: set input.group"):
            parse_pipeline("version: 1\nsteps: [toy_stack]\n")
        grouped = "version: 1\ninput: {group: {by: all}}\nsteps: [merge, toy_stack, {write: {path: a.exr}}]\n"
        with pytest.raises(PipelineError, match="toy_stack must come before merge/fuse"):
            parse_pipeline(grouped)
        assert [type(s).__name__ for s in parse_pipeline(grouped.replace("merge, toy_stack", "toy_stack, merge")).steps] == [
            "ToyStackStep", "MergeStep", "WriteStep"]
    finally:
        unregister_step("toy_stack")
    assert "toy_stack" not in schema.STEP_TYPES


def test_register_step_refuses_bad_declarations():
    class Opts(_Strict):
        x: int = 1

    class S(Stage):
        kind = "s"

        def __init__(self, opts):
            self.opts = opts

    for bad in ("Blur", "2x", "with-dash", ""):
        with pytest.raises(ValueError, match="step name"):
            register_step(bad, options=Opts, stage=S)
    with pytest.raises(ValueError, match="registered already"):
        register_step("model", options=Opts, stage=S)
    with pytest.raises(ValueError, match="pydantic model"):
        register_step("toy_bad", options=dict, stage=S)
    with pytest.raises(ValueError, match="stack=True"):
        register_step("toy_bad", options=Opts, stage=S, stack=True)
    with pytest.raises(ValueError, match="model_option"):
        register_step("toy_bad", options=Opts, stage=S, model_option="name")
    assert "toy_bad" not in schema.STEP_TYPES


def test_model_step_and_network_merge_run_through_run_model(tmp_path, monkeypatch):
    """The model step and the network HDR merge both call run_model; the merge still equals the reference
    network merge (restore.hdr.network.merge_network) on the whole image."""
    import torch

    from restore.hdr.network import merge_network
    from restore.models import load_model
    from restore.pipeline import model_run
    from restore.tiling import TileSpec
    from tests.golden import load_golden
    from tests.test_compile import tiny_compact

    calls = []
    real = model_run.run_model

    def spy(model, pixels, run, **kw):
        calls.append((run, kw.get("layout", "hwc")))
        return real(model, pixels, run, **kw)

    monkeypatch.setattr(model_run, "run_model", spy)
    monkeypatch.setattr("restore.pipeline.steps.model.run_model", spy)
    monkeypatch.setattr("restore.pipeline.steps.merge.run_model", spy)

    w = tiny_compact(tmp_path / "tiny.safetensors", scale=1)
    load_pipeline(f"version: 1\nsteps:\n  - model: {{name: {w}, tile: 16, overlap: 2, threads: 1}}\n")(
        np.random.default_rng(0).random((20, 28, 3)).astype(np.float32))
    (run, layout), = calls
    assert (run.tile, run.overlap, run.threads, run.whole_if_fits, layout) == (16, 2, 1, False, "hwc")

    _, weights, _ = load_golden("hdr_transformer")
    torch.save({"params": weights}, tmp_path / "hdr.pth")
    rng = np.random.default_rng(1)
    base = rng.random((32, 48, 3)).astype(np.float32) * 0.6 + 0.2
    times = [0.25, 1.0, 4.0]
    frames = [np.clip(base * t / 2, 0, 1) ** (1 / 2.2) for t in times]
    p = load_pipeline({"version": 1, "input": {"group": {"by": "size", "size": 3}},
                       "steps": [{"merge": {"model": str(tmp_path / "hdr.pth"), "tile": 0, "precision": "fp32", "device": "cpu"}}]})
    out = p(frames, exposure_times=times)
    run, layout = calls[-1]
    assert len(calls) == 2 and layout == "chw" and run.tile == 0 and run.threads is None
    m = load_model(str(tmp_path / "hdr.pth"))
    ref = merge_network(m.module, frames, times, spec=TileSpec(0), multiple_of=m.multiple_of)
    assert out.shape == ref.shape == (32, 48, 3) and np.allclose(out, ref, atol=1e-5)


def test_run_options_from_a_step():
    from restore.pipeline.model_run import RunOptions

    m = parse_pipeline("version: 1\nsteps:\n  - model: {name: x.pth, tile: auto, batch: 2}\n".replace("x.pth", __file__)).steps[0].model
    r = RunOptions.from_options(m)
    assert (r.tile, r.batch, r.threads, r.whole_if_fits, r.compile) == ("auto", 2, "auto", False, False)
    d = parse_pipeline(f"version: 1\nsteps:\n  - model: {{name: {__file__}}}\n").steps[0].model
    assert RunOptions.from_options(d).whole_if_fits and RunOptions.from_options(d).tile == 256
    merge = step_info("merge").options(model=__file__)
    r = RunOptions.from_options(merge)
    assert (r.tile, r.threads, r.memory, r.whole_if_fits, r.batch) == (256, None, None, True, 1)
