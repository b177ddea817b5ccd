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
    monkeypatch.setattr(tiling, "CPU_BF16_VERIFIED", {"DAT": "measured"})
    assert tiling.resolve_precision("auto", cpu, False, True, arch="DAT") == torch.bfloat16
    assert tiling.resolve_precision("auto", cpu, False, True, arch="HAT") == torch.float32
    assert tiling.resolve_precision("auto", cpu, False, False, arch="DAT") == torch.float32
    monkeypatch.setattr(tiling, "cpu_has_fast_bf16", lambda: False)
    assert tiling.resolve_precision("auto", cpu, False, True, arch="DAT") == torch.float32
