"""Every value of every enumerated option that ``restore validate`` accepts also works at run time (issue 17:
EXR ``compression: none`` validated and then failed on every file).

The values are read from the pipeline schema itself (the ``Literal`` annotations of each step's options), so
an option added later is covered without touching this file; each runs once through a small pipeline on a
small input of the kind it needs.  A value may fail an input for a reason of its own (``ev-bias`` grouping
needs EXIF exposure biases), but only with a one-line reason (a RestoreError), never a library's or our own
crash (``AttributeError: ...``).
"""

from __future__ import annotations

import re
import typing
from pathlib import Path

import cv2
import numpy as np
import pytest

from restore.io import EXR_COMPRESSIONS, TIFF_COMPRESSIONS
from restore.pipeline import load_pipeline, schema

ROOT = Path(__file__).resolve().parents[1]
DNG = ROOT / "examples" / "coffee_raw.dng"


def literal_values(annotation) -> list:
    """The values of every ``Literal`` inside an annotation (``Literal[...] | None``, ``Union[Literal, list]``)."""
    if typing.get_origin(annotation) is typing.Literal:
        return list(typing.get_args(annotation))
    return [v for a in typing.get_args(annotation) for v in literal_values(a)]


def cases() -> list[tuple[str, str, object]]:
    out = []
    for step, model in schema.STEP_TYPES.items():
        opts = model.model_fields[step].annotation
        for field, info in opts.model_fields.items():
            for value in literal_values(info.annotation):
                out.append((step, field, value))
    for value in literal_values(schema.GroupOptions.model_fields["by"].annotation):
        out.append(("group", "by", value))
    for value in EXR_COMPRESSIONS:
        out.append(("write", "compression.exr", value))
    for value in TIFF_COMPRESSIONS:
        out.append(("write", "compression.tif", value))
    return out


CASES = cases()


@pytest.fixture(scope="module")
def inputs(tmp_path_factory):
    from restore.image import LINEAR_REC709, Image, Metadata
    from restore.io import write

    d = tmp_path_factory.mktemp("every-option")
    rng = np.random.default_rng(0)
    y, x = np.mgrid[0:48, 0:64].astype(np.float32)
    lin = np.stack([0.2 + 0.15 * np.sin(x / 5), 0.2 + 0.15 * np.cos(y / 4), 0.1 + (x + y) / 500], -1).astype(np.float32)
    png = d / "photo.png"
    cv2.imwrite(str(png), (np.clip(lin ** (1 / 2.2), 0, 1)[:, :, ::-1] * 255).astype(np.uint8))
    brackets = d / "bracket"
    brackets.mkdir()
    rows = ["filename,exposure_time_s"]
    for k, ev in enumerate((-2, 0, 2)):
        frame = np.clip(lin * 2.0**ev + rng.normal(0, 0.002, lin.shape), 0, 1).astype(np.float32)
        cv2.imwrite(str(brackets / f"f{k}.png"), (frame ** (1 / 2.2) * 255)[:, :, ::-1].astype(np.uint8))
        write(Image(frame, LINEAR_REC709, Metadata(exposure_time_s=0.01 * 2.0**ev)), brackets / f"l{k}.exr", dtype="float")
        rows.append(f"f{k}.png,{0.01 * 2.0**ev}")
    (brackets / "times.csv").write_text("\n".join(rows) + "\n")
    from tests.test_compile import tiny_compact

    model = tiny_compact(d / "tiny.safetensors", scale=1)
    return {"png": png, "brackets": brackets, "model": model, "root": d}


def pipeline_for(step: str, field: str, value, inputs) -> tuple[dict, list[Path]]:
    """A pipeline using ``field: value`` and the files it runs on."""
    png, b = inputs["png"], inputs["brackets"]
    ldr = [b / f"f{k}.png" for k in range(3)]
    times = str(b / "times.csv")
    bracket_input = {"group": {"by": "all"}, "exposure_times": times}
    if step == "develop":
        out = "{stem}.dng" if (field, value) == ("output", "cfa") else "{stem}.exr"  # a mosaic is written as a CFA DNG
        return {"version": 1, "steps": [{"develop": {field: value}}, {"write": {"path": out}}]}, [DNG]
    if step == "model":
        return {"version": 1, "steps": [{"model": {"name": str(inputs["model"]), "tile": 32, field: value}},
                                        {"write": {"path": "{stem}.png"}}]}, [png]
    if step == "resize":
        return {"version": 1, "steps": [{"resize": {"scale": 0.5, field: value}}, {"write": {"path": "{stem}.png"}}]}, [png]
    if step == "convert":
        return {"version": 1, "steps": [{"convert": {field: value}}, {"write": {"path": "{stem}.exr"}}]}, [png]
    if step == "write":
        if field == "compression.exr":
            return {"version": 1, "steps": [{"write": {"path": "{stem}.exr", "compression": value}}]}, [png]
        if field == "compression.tif":
            return {"version": 1, "steps": [{"write": {"path": "{stem}.tif", "compression": value}}]}, [png]
        if field == "bit_depth":
            return {"version": 1, "steps": [{"write": {"path": "{stem}.tif" if value == 32 else "{stem}.png", "bit_depth": value}}]}, [png]
        return {"version": 1, "steps": [{"write": {"path": "{stem}.exr", field: value}}]}, [png]
    if step == "align":
        return {"version": 1, "input": bracket_input, "steps": [{"align": {field: value}}, {"fuse": {}}, {"write": {"path": "{group}.png"}}]}, ldr
    if step == "merge":
        if value == "model" or field in ("precision", "device", "tile", "overlap"):
            pytest.skip("merge: model (and its options) needs an HDR network checkpoint (tests/hdr/test_network_merge.py)")
        files = [b / f"l{k}.exr" for k in range(3)] if value == "raw-linear" else ldr
        return {"version": 1, "input": bracket_input, "steps": [{"merge": {field: value}}, {"write": {"path": "{group}.exr"}}]}, files
    if step == "tonemap":
        return {"version": 1, "input": bracket_input, "steps": [{"merge": {}}, {"tonemap": {field: value}},
                                                               {"write": {"path": "{group}.png"}}]}, ldr
    if step == "denoise":
        return {"version": 1, "input": bracket_input, "steps": [{"merge": {}}, {"denoise": {field: value}},
                                                               {"write": {"path": "{group}.exr"}}]}, ldr
    if step == "group":
        return {"version": 1, "input": {"group": {"by": value, **({"size": 3} if value == "size" else {})}, "exposure_times": times},
                "steps": [{"fuse": {}}, {"write": {"path": "{group}.png"}}]}, ldr
    raise AssertionError(f"no harness for step {step!r}: add one")


@pytest.mark.parametrize(("step", "field", "value"), CASES, ids=[f"{s}.{f}={v}" for s, f, v in CASES])
def test_every_enumerated_value_runs(step, field, value, inputs, tmp_path):
    spec, files = pipeline_for(step, field, value, inputs)
    if (step, field, value) == ("denoise", "method", "oidn"):
        pytest.importorskip("pyoidn", reason='pip install -e ".[denoise]"')
    pipe = load_pipeline(spec)  # what validate accepts ...
    report = pipe.run(files, tmp_path / "out", timeout_s=None)
    for r in report.results:  # ... runs, or fails with its own one-line reason, never a crash
        if r.status == "failed":
            assert not re.search(r"\b[A-Z][a-zA-Z]*(Error|Exception): ", r.error or ""), r.error
    done = [r for r in report.results if r.status == "done"]
    own_reason = {("group", "by", "ev-bias"), ("group", "by", "time-gap"),  # they need EXIF the PNGs lack
                  ("develop", "output", "camera"),  # camera RGB only feeds raw-RGB models: no file format takes it
                  ("model", "precision", "fp16")}  # fp16 needs CUDA
    if (step, field, value) not in own_reason or (value == "fp16" and __import__("torch").cuda.is_available()):
        assert done, [r.error for r in report.results]
        for r in done:
            assert all(Path(o).is_file() and Path(o).stat().st_size > 0 for o in r.outputs)
    else:
        assert not done and all(isinstance(r.error, str) and len(r.error) > 10 for r in report.results)
