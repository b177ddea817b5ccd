"""restore.models.mixed_precision: the SR head and tail run in float32 under autocast, and only there."""

from __future__ import annotations

import copy

import torch

from restore.models.mixed_precision import keep_head_and_tail_fp32
from tests.test_fused_attention import _tiny


def test_head_and_tail_run_fp32_under_autocast_only():
    ref = _tiny("DAT").eval()
    m = copy.deepcopy(ref)
    assert keep_head_and_tail_fp32(m) == ["conv_first", "conv_after_body", "upsample"]
    assert keep_head_and_tail_fp32(m) == []  # idempotent
    x = torch.rand(1, 3, 16, 16)
    with torch.inference_mode():
        with torch.autocast("cpu", torch.bfloat16):
            head = m.conv_first(x)
            head_ref = ref.conv_first(x)
            out, out_ref = m(x), ref(x)
        assert head.dtype == torch.float32 and head_ref.dtype == torch.bfloat16
        assert torch.equal(head, ref.conv_first(x))  # the float32 convolution itself
        exact = ref(x)
        assert torch.equal(m(x), exact)  # outside autocast: unchanged
    # the float32 tail brings the bf16 output closer to float32
    assert (out.float() - exact).abs().mean() < (out_ref.float() - exact).abs().mean()
    assert m.state_dict().keys() == ref.state_dict().keys()


def test_loader_applies_it_to_sr_models():
    import restore

    m = restore.load_model("dat-light-x2").module
    assert m.conv_first.__dict__.get("_restore_fp32") and m.upsample.__dict__.get("_restore_fp32")
