"""The do-no-harm guard (issue 20): thresholds, weights, and the model step leaving an image alone."""

import hashlib
import importlib
import sys
from pathlib import Path

import numpy as np
import pytest
import yaml

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from restore.guard import Guard, guard_weight  # noqa: E402
from restore.image import SRGB, Image, Metadata  # noqa: E402
from restore.pipeline.base import Context  # noqa: E402
from restore.pipeline.steps.model import ModelOptions, ModelStage  # noqa: E402

cat = importlib.import_module("restore.models.catalog")  # the module (restore.models.catalog is also a function)


def test_weight_rises_linearly_between_the_thresholds():
    x = np.full((8, 8, 3), 0.5, np.float32)
    g = Guard(0.01, 0.03)
    assert guard_weight(x, x + 0.005, g)[0] == 0.0
    w, e = guard_weight(x, x + 0.02, g)
    assert e == pytest.approx(0.02, abs=1e-6) and w == pytest.approx(0.5, abs=1e-4)
    assert guard_weight(x, x - 0.05, g)[0] == 1.0  # the sign of the residual does not matter
    with pytest.raises(ValueError, match="differ in shape"):
        guard_weight(x, x[:4], g)


@pytest.mark.parametrize("bad", [(0.0, 0.1), (0.1, 0.1), (0.2, 0.1), (float("nan"), 0.1)])
def test_thresholds_must_be_ordered(bad):
    with pytest.raises(ValueError, match="0 < low < high"):
        Guard(*bad)
    with pytest.raises(ValueError, match="mapping"):
        Guard.from_manifest([0.1, 0.2])


@pytest.fixture
def guarded(tmp_path, monkeypatch):
    """A private catalogue entry 'tiny-guarded': a tiny x1 model whose MANIFEST entry carries a guard."""
    from tests.test_compile import tiny_compact

    d = tmp_path / "w"
    d.mkdir()
    path = tiny_compact(d / "tiny.safetensors", scale=1)
    digest = hashlib.sha256(path.read_bytes()).hexdigest()

    def manifest(guard):
        entry = {"name": "tiny-guarded", "file": "tiny.safetensors", "sha256": digest, "arch": "Compact",
                 "task": "restoration"}
        if guard is not None:
            entry["guard"] = guard
        (d / "MANIFEST").write_text(yaml.safe_dump({"version": 1, "models": [entry]}))
        cat.refresh()

    monkeypatch.setenv("RESTORE_WEIGHTS", str(d))
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    yield manifest
    cat.refresh()


def _run(name, px, **opts):
    ctx = Context()
    out = ModelStage(ModelOptions(name=name, tile=0, precision="fp32", threads=1, **opts))(
        Image(px, SRGB, Metadata()), ctx)
    return out.pixels, ctx.notes


def test_model_step_leaves_the_image_alone_below_the_threshold(guarded):
    px = np.random.default_rng(0).random((24, 32, 3)).astype(np.float32)
    guarded(None)
    raw, notes = _run("tiny-guarded", px)
    assert not any("guard" in n for n in notes)
    e = float(np.mean(np.abs(raw - px)))
    assert e > 0.01  # the random tiny model changes the image a lot
    guarded({"low": e * 2, "high": e * 4})  # far more than this model proposes: left alone
    out, notes = _run("tiny-guarded", px)
    np.testing.assert_allclose(out, px, atol=1e-6)
    assert any("left unchanged" in n for n in notes)
    guarded({"low": e / 2, "high": e * 1.5})  # halfway: half the residual
    out, notes = _run("tiny-guarded", px)
    np.testing.assert_allclose(out, px + 0.5 * (raw - px), atol=2e-3)
    out, _ = _run("tiny-guarded", px, guard="off")
    np.testing.assert_allclose(out, raw, atol=1e-6)
    guarded({"low": 1, "high": 0})
    with pytest.raises(Exception, match="MANIFEST.*0 < low < high"):
        _run("tiny-guarded", px)
