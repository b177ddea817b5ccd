import torch

from restore import tiling
from restore.bench import esrgan_tile_loop


def test_esrgan_reference_loop_equals_whole_for_a_pointwise_model():
    x = torch.rand(1, 3, 45, 70)
    up = lambda t: torch.nn.functional.interpolate(t, scale_factor=2, mode="nearest")  # noqa: E731
    assert torch.equal(esrgan_tile_loop(up, x, 2, tile=16), up(x))


def test_cpu_auto_precision_uses_bf16_only_for_verified_architectures(monkeypatch):
    cpu = torch.device("cpu")
    monkeypatch.setattr(tiling, "cpu_has_fast_bf16", lambda: True)
    assert tiling.resolve_precision("auto", cpu, False, True, cpu_bf16_ok=True) == torch.bfloat16
    assert tiling.resolve_precision("auto", cpu, False, True, cpu_bf16_ok=False) == torch.float32
    assert tiling.resolve_precision("auto", cpu, False, False, cpu_bf16_ok=True) == torch.float32
    monkeypatch.setattr(tiling, "cpu_has_fast_bf16", lambda: False)
    assert tiling.resolve_precision("auto", cpu, False, True, cpu_bf16_ok=True) == torch.float32


def test_bench_runs_whole_and_tiled_through_the_model_step_run(tmp_path, monkeypatch):
    """``restore bench`` times the model step's own run (restore.pipeline.model_run.run_model), not a copy."""
    from restore.bench import bench_method
    from restore.pipeline import model_run
    from tests.test_compile import tiny_compact

    w = tiny_compact(tmp_path / "tiny.safetensors")
    runs = []
    real = model_run.run_model

    def spy(model, pixels, run, **kw):
        runs.append(run)
        return real(model, pixels, run, **kw)

    monkeypatch.setattr(model_run, "run_model", spy)
    for method in ("whole", "tiled", "esrgan-loop"):
        r = bench_method(str(w), method, 40, 24, 16, 4, 1, "fp32", "cpu")
        assert r["method"] == method and r["seconds"] > 0 and r["dtype"] == "float32"
    assert [(r.tile, r.overlap, r.whole_if_fits) for r in runs] == [(0, 4, False), (16, 4, False)]
