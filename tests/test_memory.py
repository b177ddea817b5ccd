"""Memory curves (restore.memory) and ``tile: auto`` on a model step."""

import numpy as np
import pytest

from restore import memory
from restore.pipeline import load_pipeline

from .test_compile import tiny_compact


def test_parse_bytes():
    assert memory.parse_bytes("4GB") == 4 * 2**30
    assert memory.parse_bytes("512 MiB") == 512 * 2**20
    assert memory.parse_bytes(1000) == 1000
    with pytest.raises(ValueError, match="not a memory size"):
        memory.parse_bytes("lots")


@pytest.mark.skipif(not memory._hwm_supported(), reason="needs Linux /proc/self/clear_refs to read peak memory")
def test_measured_curve_predicts_a_larger_tile(tmp_path):
    """Fit at 64-192 px, predict the peak of a 288 px pass: within a factor 2 of the measured one.
    (In a fresh process: the test runner's own heap history would blur resident-size peaks.)

    Why 2: on CPU the resident-size peak of one pass counts between about 3 and 6 activation-sized buffers,
    depending on which freed blocks the allocator hands back (measured for this model at 192 px: 28.5, 38.0,
    47.2 and 56.9 MB in different processes, 2 threads or 1), so a fit from small passes can land up to ~1.7x
    from a later pass either way. A wrong fit (no per-pixel term, a per-tile or per-channel slip) is off by
    far more."""
    import json
    import subprocess
    import sys
    from pathlib import Path

    w = tiny_compact(tmp_path / "c.safetensors", feat=64, convs=3)
    code = (
        "import json; from restore import memory; from restore.models import load_model;"
        f"m = load_model({str(w)!r}); c = memory.measure_curve(m.module, 3);"
        "big = memory.measure_curve(m.module, 3, sizes=(288, 288));"
        "print(json.dumps([c.b, list(c.peaks), c.predict(288 * 288), max(big.peaks)]))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                         cwd=Path(__file__).resolve().parents[1])
    b, peaks, predicted, actual = json.loads(out.stdout.strip().splitlines()[-1])
    assert b > 0 and peaks == sorted(peaks)  # bigger tiles, bigger peaks
    assert actual / 2 < predicted < actual * 2, (predicted, actual, peaks)


def test_tile_for_budget_is_monotonic_and_aligned():
    c = memory.MemoryCurve(a=50e6, b=2000.0, c=0.0, sizes=(48, 96, 144), peaks=(0, 0, 0), device="cpu", dtype="float32")
    t_small = memory.tile_for_budget(c, 100e6, multiple_of=8)
    t_big = memory.tile_for_budget(c, 400e6, multiple_of=8)
    assert t_small % 8 == 0 and t_big % 8 == 0 and t_big > t_small
    assert c.predict(t_small**2) <= 100e6 < c.predict((t_small + 16) ** 2)
    # context counts: the forward pass is tile + 2 * context wide
    assert memory.tile_for_budget(c, 100e6, context=32, multiple_of=8) < t_small
    # nothing fits: the smallest tile (the tiler halves on out-of-memory)
    assert memory.tile_for_budget(c, 1e6, multiple_of=8) == 64


@pytest.mark.skipif(not memory._hwm_supported(), reason="needs Linux /proc/self/clear_refs to read peak memory")
def test_tile_auto_uses_the_cached_curve_and_says_so(tmp_path, monkeypatch):
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    w = tiny_compact(tmp_path / "tiny.safetensors", feat=32, convs=2)
    img = (np.random.default_rng(0).random((96, 160, 3)) * 255).astype(np.uint8)
    text = f"version: 1\nname: t\nsteps:\n  - model: {{name: {w}, tile: auto, memory: 40MB, precision: fp32}}\n"
    pipe = load_pipeline(text)
    from restore.pipeline.stages import Context

    ctx = Context()
    out = pipe.process(__import__("restore").Image(img.astype(np.float32) / 255, __import__("restore").SRGB), ctx).pixels
    assert any(n.startswith("tile auto:") and "GiB budget" in n for n in ctx.notes), ctx.notes
    assert (tmp_path / "cache" / "restore" / "memory-curves.json").is_file()
    whole = load_pipeline(text.replace("tile: auto, memory: 40MB", "tile: 0"))(img)
    assert np.abs(np.round(out * 255) - whole.astype(np.float64)).max() <= 1
    # a second pipeline reads the cached curve instead of measuring again
    monkeypatch.setattr(memory, "measure_curve", lambda *a, **k: pytest.fail("measured again"))
    again = load_pipeline(text)(img)
    assert again.shape == (192, 320, 3)
