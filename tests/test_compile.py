"""``compile: true`` on a model step: same output as eager, kernels cached in the user cache."""

import numpy as np
import pytest
import torch

from restore.pipeline import load_pipeline


def tiny_compact(path, feat=4, convs=2, scale=2):
    """A tiny SRVGGNetCompact (spandrel's "Compact") with random weights, saved as safetensors."""
    from safetensors.torch import save_file

    g = torch.Generator().manual_seed(0)
    sd = {"body.0.weight": torch.randn(feat, 3, 3, 3, generator=g) * 0.2, "body.0.bias": torch.zeros(feat),
          "body.1.weight": torch.full((feat,), 0.25)}
    i = 2
    for _ in range(convs):
        sd[f"body.{i}.weight"] = torch.randn(feat, feat, 3, 3, generator=g) * 0.2
        sd[f"body.{i}.bias"] = torch.zeros(feat)
        sd[f"body.{i + 1}.weight"] = torch.full((feat,), 0.25)
        i += 2
    sd[f"body.{i}.weight"] = torch.randn(3 * scale * scale, feat, 3, 3, generator=g) * 0.2
    sd[f"body.{i}.bias"] = torch.zeros(3 * scale * scale)
    save_file(sd, str(path))
    return path


@pytest.mark.skipif(not hasattr(torch, "compile"), reason="torch.compile needs torch >= 2.0")
def test_compiled_model_step_matches_eager_and_caches_kernels(tmp_path, monkeypatch):
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    monkeypatch.delenv("TORCHINDUCTOR_CACHE_DIR", raising=False)
    w = tiny_compact(tmp_path / "tiny.safetensors")
    img = (np.random.default_rng(0).random((40, 56, 3)) * 255).astype(np.uint8)
    text = ("version: 1\nname: t\nsteps:\n  - model: {{name: {w}, tile: 32, overlap: 8, precision: fp32{extra}}}\n")
    eager = load_pipeline(text.format(w=w, extra=""))(img)
    pipe = load_pipeline(text.format(w=w, extra=", compile: true"))
    try:
        compiled = pipe(img)
    finally:
        import os

        os.environ.pop("TORCHINDUCTOR_CACHE_DIR", None)  # set by the step for the test's cache only
    assert compiled.shape == eager.shape == (80, 112, 3)
    assert np.abs(compiled.astype(int) - eager.astype(int)).max() <= 1
    stage = pipe.stages[0]
    assert stage._compiled["failed"] is None, stage._compiled["failed"]
    assert any((tmp_path / "cache" / "restore" / "inductor").rglob("*")), "no compiled kernels in the user cache"
