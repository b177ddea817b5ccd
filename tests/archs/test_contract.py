"""The contract every architecture ``restore`` implements meets, written once over a table.

For each golden fixture (``../shared/golden/<fixture>``, made with the official code; tests skip
with the reason when ``../shared`` is absent):

* **golden**: the module built from the fixture's config, strict-loaded, reproduces every stored
  output in float64 (``tests/golden.py::assert_golden``); the input is not modified; 3-frame
  models give the same output for the frames stacked on channels;
* **detect and load**: exactly this architecture (among ours) detects the weights, the inferred
  hyper-parameters are the fixture's, spandrel's descriptor (purpose, scale 1, channels, size
  requirements, tiling consistent with the descriptor's ``whole_image``, no fp16) reproduces the
  output, and the official checkpoint wrapper canonicalises to the same keys;
* **load_model**: ``restore.load_model`` on the fixture's safetensors and on a ``.pth`` saved the
  way the official code saves it, with no hint, strict, reproduces the output;
* **registry**: in ``spandrel.MAIN_REGISTRY`` only this architecture and those it is ordered
  ``before`` claim the weights, this one first, also through the official wrapper.

For each full-size official layout (``official_state_dict.json``): the module built on the meta
device has the official names, shapes, dtypes and parameter count; exactly this architecture
detects it, first in the whole registry, with the official hyper-parameters; the class defaults
reproduce the released configuration where the official class does.

For each tiny configuration: weights round-trip (detect, infer the hyper-parameters, load, same
output).  For each architecture: its registered descriptor.

Arch-specific behaviour the contract cannot express stays in ``test_<arch>.py``.
"""

from __future__ import annotations

import copy
import importlib
import inspect
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import pytest
import spandrel
import torch
from spandrel import ModelTiling
from torch import nn

import restore
from restore.models.archs import declared, registered
from restore.models.archs._swin import to_2tuple
from restore.models.loader import unwrap_checkpoint
from tests.golden import assert_close, assert_golden, assert_official_layout, load_golden, meta_state_dict, official_configs, shared_path

# ------------------------------------------------------------------------------------ per-arch facts


def _equal(inferred: dict, expected: dict, strict: bool) -> None:
    assert inferred == expected


def _norm(v):
    if isinstance(v, (list, tuple)):
        return [_norm(i) for i in v]
    return v


def _swin_params(exclude: frozenset[str]) -> Callable[[dict, dict, bool], None]:
    """Swin HDR models: ``img_size`` as a pair, lists and tuples alike; ``strict``: every expected key
    is inferred, else only the inferred ones are compared."""

    def check(inferred: dict, expected: dict, strict: bool) -> None:
        keys = [k for k in expected if k not in exclude] if strict else [k for k in inferred if k in expected and k not in exclude]
        for k in keys:
            got, want = inferred[k], expected[k]
            if k == "img_size":
                got, want = to_2tuple(got), to_2tuple(want)
            assert _norm(got) == _norm(want), f"{k}: inferred {got!r}, expected {want!r}"

    return check


def _rawformer_params(inferred: dict, expected: dict, strict: bool) -> None:
    # n_heads leaves no trace in the weights (see rawformer.infer_params)
    drop = {"n_heads"}
    assert {k: _norm(v) for k, v in inferred.items() if k not in drop} == {k: _norm(v) for k, v in expected.items() if k not in drop}


def _rrformer_params(inferred: dict, expected: dict, strict: bool) -> None:
    inferred, expected = dict(inferred), dict(expected)
    swin, want = inferred.pop("swinir_kwargs"), expected.pop("swinir_kwargs", None) or {}
    assert inferred == expected
    assert {k: _norm(swin[k]) for k in want} == {k: _norm(v) for k, v in want.items()}


def _perturb(model: nn.Module, seed: int) -> nn.Module:
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in model.parameters():
            p.add_(torch.randn(p.shape, generator=g) * 0.05)
    return model.eval()


def _perturb_rawformer(model: nn.Module, seed: int) -> nn.Module:
    """Every parameter matters (rezero scalars start at 0)."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in model.named_parameters():
            if name.endswith("re_alpha"):
                p.copy_(0.5 + 0.5 * torch.rand(p.shape, generator=g))
            else:
                p.add_(0.05 * torch.randn(p.shape, generator=g))
    return model.eval()


def _perturb_rrformer(model: nn.Module, seed: int) -> nn.Module:
    _perturb(model, seed)
    with torch.no_grad():
        for name, b in model.named_buffers():
            if name.endswith("running_var"):
                b.uniform_(0.5, 1.5)
    return model.eval()


def _adam_state(sd: dict) -> dict:
    """A small ``optimizer.state_dict()`` as torch writes it (tensors + plain containers)."""
    first = next(iter(sd.values()))
    return {
        "state": {0: {"step": torch.tensor(7.0), "exp_avg": torch.zeros_like(first), "exp_avg_sq": torch.zeros_like(first)}},
        "param_groups": [{"lr": 2e-4, "betas": (0.9, 0.999), "eps": 1e-8, "weight_decay": 0.0, "params": [0]}],
    }


def _basicsr(sd: dict) -> dict:  # basicsr save_network: {'params': sd}, 'module.' stripped
    return {"params": sd}


def _plain(sd: dict) -> dict:  # rawformer/cgan/checkpoint.py: each network's state dict as is
    return dict(sd)


def _errnet(sd: dict) -> dict:  # ERRNetModel.save: {'icnn': sd, 'opt_g', 'epoch', 'iterations'}, no prefix
    return {"icnn": sd, "opt_g": _adam_state(sd), "epoch": 12, "iterations": 34567}


def _dataparallel_training(sd: dict) -> dict:  # HDR train scripts: nn.DataParallel -> 'module.' keys
    return {"epoch": 100, "state_dict": {"module." + k: v for k, v in sd.items()}, "optimizer": _adam_state(sd)}


@dataclass(frozen=True)
class Case:
    """One architecture in the contract.

    ``module``: ``restore.models.archs.<module>``; the class is the fixture config's ``class``.
    ``golden_kwargs(config)`` / ``layout_kwargs(cfg_kwargs)``: constructor kwargs of a fixture / a
    full-size layout; ``params(inferred, expected, strict)``: asserts inferred hyper-parameters;
    ``load(arch, weights, config)``: the descriptor that must reproduce the golden output;
    ``wrap``: how the official code saves a checkpoint (None: not saved on its own);
    ``layouts``: fixtures with an ``official_state_dict.json``; ``default``: label of the layout of
    ``layouts[0]`` the class defaults reproduce (``"first"``: its first one);
    ``variants``: (id, kwargs, expected inferred kwargs or None for kwargs) round-trip configs.
    """

    arch: str
    module: str
    cls_name: str
    fixtures: tuple[str, ...]
    info: dict
    tiling: ModelTiling
    multiple_of: Callable[[dict], int] | None = None
    layouts: tuple[str, ...] = ()
    default: str | None = None
    before: tuple[str, ...] = ()
    bf16: bool = False
    golden_kwargs: Callable[[dict], dict] = lambda c: dict(c["kwargs"])
    layout_kwargs: Callable[[dict], dict] = dict
    default_kwargs: dict = field(default_factory=dict)
    params: Callable[[dict, dict, bool], None] | None = _equal
    load: Callable = lambda arch, weights, config: arch.load(dict(weights))
    wrap: Callable[[dict], dict] | None = None
    calls: dict = field(default_factory=dict)
    variants: tuple = ()
    perturb: Callable[[nn.Module, int], nn.Module] = _perturb
    rt_input: Callable[[dict], tuple] = lambda kw: (1, kw.get("inp_channels", 3), 16, 24)
    rt_atol: float = 1e-6
    rt_defaults: bool = False

    @property
    def mod(self):
        return importlib.import_module(f"restore.models.archs.{self.module}")

    @property
    def cls(self) -> type[nn.Module]:
        return getattr(self.mod, self.cls_name)

    def full_kwargs(self, kwargs: dict) -> dict:
        """A round-trip variant's constructor kwargs (Rawformer's start from the official preset)."""
        return dict(getattr(self.mod, "OFFICIAL_DEFAULT_KWARGS", {}), **kwargs) if self.arch == "Rawformer" else dict(kwargs)

    def infer(self, sd: dict) -> dict:
        return self.mod.infer_params(sd)


_RESTORMER_FAMILY = dict(task="restoration", output_range="clamped", overlap=32, whole_image=True, frames=1, input_encoding="srgb")

CASES: tuple[Case, ...] = (
    Case(
        "Restormer", "restormer", "Restormer", ("restormer", "restormer_dualpixel"), _RESTORMER_FAMILY, ModelTiling.DISCOURAGED,
        multiple_of=lambda c: 8, layouts=("restormer", "restormer_dualpixel"), default="first", wrap=_basicsr, bf16=True,
        variants=(
            ("gray-biasfree-bias", dict(inp_channels=1, out_channels=1, dim=8, num_blocks=[1, 2, 1, 2], num_refinement_blocks=2,
                                        heads=[2, 2, 4, 4], ffn_expansion_factor=2.0, bias=True, LayerNorm_type="BiasFree",
                                        dual_pixel_task=False), None),
            ("dualpixel", dict(inp_channels=6, out_channels=3, dim=4, num_blocks=[1, 1, 1, 1], num_refinement_blocks=0,
                               heads=[1, 1, 2, 2], ffn_expansion_factor=1.5, bias=False, LayerNorm_type="WithBias",
                               dual_pixel_task=True), None),
            ("dim12-heads3", dict(inp_channels=3, out_channels=3, dim=12, num_blocks=[2, 1, 1, 1], num_refinement_blocks=1,
                                  heads=[3, 3, 6, 12], ffn_expansion_factor=2.66, bias=False, LayerNorm_type="WithBias",
                                  dual_pixel_task=False), None),
        ),
    ),
    Case(
        "DRSformer", "drsformer", "DRSformer", ("drsformer",), {**_RESTORMER_FAMILY, "task": "derain"}, ModelTiling.DISCOURAGED,
        multiple_of=lambda c: 8, layouts=("drsformer",), default="first", before=("Restormer",), wrap=_basicsr,
        golden_kwargs=lambda c: {**c["kwargs"], "mefc": True}, layout_kwargs=lambda k: {**k, "mefc": True},
        default_kwargs={"mefc": True},
        variants=(
            ("mefc-bias-biasfree", dict(inp_channels=3, out_channels=3, dim=4, num_blocks=[1, 1, 1, 1], heads=[1, 2, 2, 4],
                                        ffn_expansion_factor=2.0, bias=True, LayerNorm_type="BiasFree", mefc=True), None),
        ),
    ),
    Case(
        "DRSformerNoMEFC", "drsformer", "DRSformer", ("drsformer_nomefc",), {**_RESTORMER_FAMILY, "task": "derain"}, ModelTiling.DISCOURAGED,
        multiple_of=lambda c: 8, layouts=("drsformer_nomefc",), default="first", before=("Restormer",), wrap=_basicsr,
        golden_kwargs=lambda c: {**c["kwargs"], "mefc": False}, layout_kwargs=lambda k: {**k, "mefc": False},
        default_kwargs={"mefc": False},
        variants=(
            # level 3 has no blocks: its head count is unobservable and falls back to 4
            ("gray-zero-level3", dict(inp_channels=1, out_channels=1, dim=6, num_blocks=[2, 1, 0, 1], heads=[3, 2, 4, 6],
                                      ffn_expansion_factor=1.5, bias=False, LayerNorm_type="WithBias", mefc=False), None),
            ("dim8", dict(inp_channels=3, out_channels=3, dim=8, num_blocks=[1, 2, 1, 1], heads=[2, 2, 4, 4],
                          ffn_expansion_factor=2.66, bias=False, LayerNorm_type="WithBias", mefc=False), None),
        ),
    ),
    Case(
        "Histoformer", "histoformer", "Histoformer", ("histoformer",), {**_RESTORMER_FAMILY, "task": "weather"}, ModelTiling.DISCOURAGED,
        multiple_of=lambda c: 8, layouts=("histoformer",), default="first", before=("Restormer",), wrap=_basicsr,
        variants=(
            ("bias-refine2", dict(inp_channels=3, out_channels=3, dim=8, num_blocks=[1, 2, 1, 1], num_refinement_blocks=2,
                                  heads=[2, 2, 4, 4], ffn_expansion_factor=2.0, bias=True, LayerNorm_type="WithBias",
                                  dual_pixel_task=False), None),
            ("dualpixel-heads3", dict(inp_channels=3, out_channels=3, dim=6, num_blocks=[1, 1, 1, 1], num_refinement_blocks=0,
                                      heads=[1, 3, 3, 3], ffn_expansion_factor=4.0, bias=False, LayerNorm_type="WithBias",
                                      dual_pixel_task=True), None),
        ),
    ),
    Case(
        # no golden fixture yet; the released model.ckpt is {'state_dict': {'net.<key>': ...}} (PyTorch Lightning)
        "PromptIR", "promptir", "PromptIR", (), _RESTORMER_FAMILY, ModelTiling.DISCOURAGED, before=("Restormer",),
        variants=(
            ("rgb-3prompts", dict(inp_channels=3, out_channels=3, dim=8, num_blocks=[1, 2, 1, 1], num_refinement_blocks=1,
                                  heads=[1, 2, 2, 4], ffn_expansion_factor=2.66, bias=False, LayerNorm_type="WithBias",
                                  decoder=True, prompt_dims=[4, 6, 10], prompt_len=3, prompt_sizes=[8, 4, 2],
                                  chnl_reduce_dims=[4, 6, 8]), None),
            ("gray-biasfree-bias-1prompt", dict(inp_channels=1, out_channels=1, dim=6, num_blocks=[2, 1, 0, 1],
                                                num_refinement_blocks=0, heads=[2, 2, 3, 3], ffn_expansion_factor=2.0,
                                                bias=True, LayerNorm_type="BiasFree", decoder=True, prompt_dims=[3, 6, 9],
                                                prompt_len=1, prompt_sizes=[5, 3, 2], chnl_reduce_dims=[3, 6, 5]), None),
        ),
    ),
    Case(
        "HDRTransformer", "hdr_transformer", "HDRTransformer", ("hdr_transformer",),
        dict(task="hdr-merge", frames=3, input_encoding="hdr-ldr-pair", overlap=32, whole_image=False), ModelTiling.SUPPORTED,
        multiple_of=lambda c: c["kwargs"]["window_size"], layouts=("hdr_transformer",), before=("SwinIR",), bf16=True,
        params=_swin_params(frozenset()), wrap=_dataparallel_training, rt_defaults=True, rt_atol=0.0,
        rt_input=lambda kw: (1, 3 * kw.get("in_chans", 6), *to_2tuple(kw["img_size"])),
        variants=(
            ("3conv-rect", dict(img_size=(16, 24), embed_dim=16, depths=[2, 1, 3], num_heads=[2, 4, 1], window_size=4,
                                mlp_ratio=1.5, resi_connection="3conv", qkv_bias=False), None),
            ("ape-4ch", dict(img_size=16, in_chans=4, embed_dim=24, depths=[3], num_heads=[3], window_size=8,
                             mlp_ratio=3.0, ape=True, patch_norm=False), None),
        ),
    ),
    Case(
        "SCTNet", "sctnet", "SCTNet", ("sctnet",),
        dict(task="hdr-merge", frames=3, input_encoding="hdr-ldr-pair", output_range="sigmoid", whole_image=True),
        ModelTiling.DISCOURAGED,  # channel cross-attention is global
        multiple_of=lambda c: c["kwargs"]["window_size"], layouts=("sctnet",), bf16=True,
        params=_swin_params(frozenset({"upsampler", "upscale"})), wrap=_dataparallel_training, rt_defaults=True, rt_atol=0.0,
        rt_input=lambda kw: (1, kw["in_chans"], *to_2tuple(kw["img_size"])),
        variants=(
            ("3conv-rect", dict(img_size=(16, 24), in_chans=18, embed_dim=12, depths=[2, 1, 3], num_heads=[2, 4, 3],
                                window_size=4, mlp_ratio=1.5, resi_connection="3conv", qkv_bias=False), None),
            ("ape-12ch", dict(img_size=16, in_chans=12, embed_dim=24, depths=[3], num_heads=[3], window_size=8,
                              mlp_ratio=3.0, ape=True, patch_norm=False, img_range=1.0), None),
        ),
    ),
    Case(
        "Rawformer", "rawformer", "ViTRawNetGenerator", ("rawformer",),
        dict(task="raw-to-raw", input_encoding="raw-rgb", output_range="sigmoid", fixed_size=True), ModelTiling.SUPPORTED,
        layouts=("rawformer",), default="first", params=_rawformer_params, wrap=_plain,
        # n_heads is not in the weights: with the fixture's value the output is reproduced exactly
        load=lambda arch, weights, config: importlib.import_module("restore.models.archs.rawformer").load_rawformer(
            dict(weights), n_heads=config["kwargs"]["n_heads"]),
        perturb=_perturb_rawformer, rt_input=lambda kw: (2, *kw["input_shape"]), rt_atol=1e-5,
        variants=(
            # official-style defaults for the unrecoverable kwargs: plain ARCH.load round-trips
            ("official-style", dict(features=12, n_heads=6, n_blocks=2, ffn_features=20, embed_features=6,
                                    input_shape=(3, 16, 16), output_shape=(3, 16, 16), modnet_features_list=(4, 6),
                                    modnet_downsample="conv3", modnet_upsample="deconv", modnet_rezero=True,
                                    style_bias=False, rezero=False, n_ext=2, rawnet_token_size=4), None),
        ),
    ),
    Case(
        "RRFormer", "rrformer", "DRNet", ("rrformer",),
        dict(task="reflection", input_encoding="srgb", output_range="clamped", whole_image=True, overlap=32,
             extra_inputs=("vgg19-hypercolumn",)),
        ModelTiling.DISCOURAGED, multiple_of=lambda c: 2, layouts=("rrformer",), params=_rrformer_params, wrap=_errnet,
        golden_kwargs=lambda c: {**c["kwargs"], "swinir_kwargs": c["swinir_override"]},
        layout_kwargs=lambda k: {kk: v for kk, v in k.items() if kk != "_hardcoded_swinir_block"},
        perturb=_perturb_rrformer, rt_input=lambda kw: (1, kw["in_channels"], 32, 34), rt_atol=1e-5,
        variants=(
            # n_resblocks / se_reduction / res_scale are unused and not stored: official errnet values come back
            ("batchnorm-no-pyramid",
             dict(in_channels=5, out_channels=3, n_feats=8, n_resblocks=13, norm=nn.BatchNorm2d, se_reduction=None,
                  res_scale=1, bottom_kernel_size=3, pyramid=False,
                  swinir_kwargs=dict(embed_dim=12, depths=[2], num_heads=[3], window_size=4, img_size=32)),
             dict(in_channels=5, out_channels=3, n_feats=8, n_resblocks=13, norm=nn.BatchNorm2d, se_reduction=8,
                  res_scale=0.1, bottom_kernel_size=3, pyramid=False,
                  swinir_kwargs=dict(embed_dim=12, depths=[2], num_heads=[3], window_size=4, img_size=32))),
            ("pyramid-2-out",
             dict(in_channels=7, out_channels=2, n_feats=12, n_resblocks=13, norm=None, se_reduction=8,
                  res_scale=0.1, bottom_kernel_size=1, pyramid=True,
                  swinir_kwargs=dict(embed_dim=8, depths=[2, 1], num_heads=[2, 4], window_size=2, img_size=16, mlp_ratio=1.0)),
             None),
        ),
    ),
    Case(
        "RRFormerSwinIR", "rrformer", "SwinIR", ("rrformer_swinir",),
        dict(task="reflection-submodule", input_encoding="linear", output_range="unbounded", overlap=0),
        ModelTiling.SUPPORTED, before=("SwinIR",), params=None,
        calls={"features": lambda m, x: m.forward_features(m.check_image_size(x)), "res": lambda m, x: m.forward_residual(x)},
    ),
    Case(
        # restore's own RAW denoiser: no official release, no golden fixture (tests/test_raw_denoise.py)
        "RawDenoiseUNet", "rawdenoise", "RawDenoiseUNet", (),
        dict(task="raw-denoise", input_encoding="cfa-packed", output_range="unbounded", whole_image=False, overlap=8,
             context=40, extra_inputs=("sigma-map",)),
        ModelTiling.SUPPORTED, rt_input=lambda kw: (1, kw["in_planes"] + kw["sigma_channels"], 16, 24), rt_atol=1e-6,
        variants=(
            ("sigma4-depth3", dict(in_planes=4, base=8, depth=3, sigma_channels=4), None),
            ("sigma1-depth2", dict(in_planes=4, base=6, depth=2, sigma_channels=1), None),
            ("plain-depth1", dict(in_planes=4, base=4, depth=1, sigma_channels=0), None),
        ),
    ),
    Case(
        # restore's own RGB denoiser: no official release, no golden fixture (tests/test_denoise.py)
        "DenoiseUNet", "rgbdenoise", "DenoiseUNet", (),
        dict(task="denoise", input_encoding="srgb", output_range="clamped", whole_image=False, overlap=16,
             context=80, extra_inputs=("noise-level",)),
        ModelTiling.SUPPORTED, rt_input=lambda kw: (1, kw["channels"] + 1, 16, 32), rt_atol=1e-6,
        variants=(
            ("rgb-depth3", dict(channels=3, base=8, depth=3), None),
            ("grey-depth2", dict(channels=1, base=6, depth=2), None),
        ),
    ),
)

BY_ARCH = {c.arch: c for c in CASES}
FIXTURES = {f: c for c in CASES for f in c.fixtures}
#: (fixture, form): the fixture's safetensors (Rawformer's head count from the sidecar config.json), and a
#: ``.pth`` saved as the official code saves it (Rawformer's: tests/archs/test_rawformer.py, the head count
#: is in no state dict).
LOADS = [(f, "safetensors") for f in sorted(FIXTURES)] + [
    (f, "official") for f, c in sorted(FIXTURES.items()) if c.wrap is not None and c.arch != "Rawformer"]
LAYOUT_FIXTURES = sorted(f for c in CASES for f in c.layouts)
VARIANTS = [pytest.param(c, kw, exp, id=f"{c.arch}-{vid}") for c in CASES for vid, kw, exp in c.variants]


def _ours_detecting(sd) -> list[str]:
    return [k for k, e in registered().items() if e.arch.detect(sd)]


def _registry_claims(sd) -> list[str]:
    return [str(a.architecture.id) for a in spandrel.MAIN_REGISTRY.architectures("detection") if a.detect(sd)]


def _inputs(config: dict, io: dict) -> list[torch.Tensor]:
    return [io[k] for k in config["forward_args"]]


def _golden_all(case: Case, model: nn.Module, config: dict, io: dict) -> torch.Tensor:
    out = None
    for key in config.get("output_keys", ["output"]):
        y = assert_golden(model, _inputs(config, io), io[key], config["atol"], call=case.calls.get(key))
        out = y if out is None else out
    return out


# ------------------------------------------------------------------------------------ the contract


def test_every_registered_architecture_is_in_the_contract():
    assert set(BY_ARCH) == set(registered())


@pytest.mark.parametrize("fixture", sorted(FIXTURES))
def test_golden(fixture):
    case = FIXTURES[fixture]
    config, weights, io = load_golden(fixture)
    assert config["class"] == case.cls_name
    model = case.cls(**case.golden_kwargs(config))
    model.load_state_dict(weights, strict=True)
    model.eval()
    before = {k: v.clone() for k, v in io.items()}
    out = _golden_all(case, model, config, io)
    assert all(torch.equal(io[k], before[k]) for k in io)  # in-place ops of the official code do not leak out
    if registered()[case.arch].info.frames == 3:  # the frames stacked on channels give the same result
        with torch.no_grad():
            assert_close(model(torch.cat(_inputs(config, io), dim=1)), out, 0.0)


@pytest.mark.parametrize("fixture", sorted(FIXTURES))
def test_detect_and_load(fixture):
    case = FIXTURES[fixture]
    config, weights, io = load_golden(fixture)
    entry = registered()[case.arch]
    assert _ours_detecting(weights) == [case.arch]  # told apart from every other architecture of ours
    if case.params is not None:
        case.params(case.infer(weights), case.golden_kwargs(config), True)
    desc = case.load(entry.arch, weights, config)
    assert desc.architecture is entry.arch
    assert desc.purpose == "Restoration" and desc.scale == 1
    inputs = _inputs(config, io)
    assert desc.input_channels == sum(t.shape[1] for t in inputs)
    assert desc.output_channels == io["output"].shape[1]
    h, w = inputs[0].shape[-2:]
    assert desc.size_requirements.check(w, h)
    if case.multiple_of is not None:
        assert desc.size_requirements.multiple_of == case.multiple_of(config)
    assert desc.tiling == case.tiling
    assert (desc.tiling == ModelTiling.DISCOURAGED) == entry.info.whole_image  # one source: the descriptor
    assert not desc.supports_half and desc.supports_bfloat16 == case.bf16
    if getattr(desc.model, "hyperparameters", None) is not None and case.params is _equal:
        assert desc.model.hyperparameters == case.golden_kwargs(config)
    desc.model.eval()
    assert_golden(desc.model, inputs, io["output"], config["atol"], call=case.calls.get("output"))
    if case.wrap is not None:  # the official checkpoint layout unwraps to the same keys
        canon = unwrap_checkpoint(case.wrap(dict(weights)))
        assert set(canon) == set(weights) and entry.arch.detect(canon)
        if case.arch != "RRFormer":  # spandrel's own canonicalisation too ('icnn' is ERRNet's, not spandrel's)
            assert set(spandrel.canonicalize_state_dict(case.wrap(dict(weights)))) == set(weights)


@pytest.mark.parametrize("fixture", sorted(FIXTURES))
def test_registry_claims(fixture):
    case = FIXTURES[fixture]
    _, weights, _ = load_golden(fixture)
    entry = registered()[case.arch]
    assert set(case.before) <= set(map(str, entry.before))
    claims = _registry_claims(weights)
    assert claims[0] == case.arch and set(claims) <= {case.arch, *map(str, entry.before)}, claims
    if case.wrap is not None:
        assert str(spandrel.MAIN_REGISTRY.load(case.wrap(dict(weights))).architecture.id) == case.arch


@pytest.mark.parametrize(("fixture", "form"), LOADS)
def test_load_model(tmp_path: Path, fixture, form):
    """``restore.load_model`` with no hint, strict, the official forward signature (``m.model(*inputs)``)."""
    case = FIXTURES[fixture]
    config, weights, io = load_golden(fixture)
    if form == "safetensors":
        path = shared_path("golden", fixture) / "weights.safetensors"  # Rawformer's head count: the sidecar config.json
    else:
        path = tmp_path / f"{fixture}.pth"
        torch.save(case.wrap(dict(weights)), path)
    m = restore.load_model(path)
    assert m.arch == case.arch and m.source == path
    assert set(m.module.state_dict()) == set(weights)
    out = _golden_all(case, m.model, config, io)
    if m.info.frames == 3:
        assert m.input_channels == 18
        with torch.no_grad():
            assert_close(m.module(torch.cat(_inputs(config, io), dim=1)), out, 0.0)


@pytest.mark.parametrize("fixture", LAYOUT_FIXTURES)
def test_full_size_official_layouts(fixture):
    case = FIXTURES[fixture]
    config, _, _ = load_golden(fixture)
    configs = official_configs(fixture)
    cls = case.cls
    for label, cfg in configs.items():
        with torch.device("meta"):
            model = cls(**case.layout_kwargs(cfg["kwargs"]))
        assert_official_layout(model, cfg, label)
        meta = meta_state_dict(cfg["state_dict"])
        assert _ours_detecting(meta) == [case.arch], label
        assert _registry_claims(meta)[0] == case.arch, label  # the whole registry, spandrel's included
        if case.params is not None:
            case.params(case.infer(meta), case.layout_kwargs(cfg["kwargs"]), False)
    if case.default is not None and fixture == case.layouts[0]:  # the class defaults are the released configuration
        cfg = next(iter(configs.values())) if case.default == "first" else configs[case.default]
        with torch.device("meta"):
            default = cls(**case.default_kwargs)
        assert_official_layout(default, cfg, "class defaults")


@pytest.mark.parametrize(("case", "kwargs", "expected"), VARIANTS)
def test_round_trip(case: Case, kwargs: dict, expected: dict | None):
    torch.manual_seed(0)
    cls = case.cls
    full = case.full_kwargs(kwargs)
    model = case.perturb(cls(**full), 1)
    sd = model.state_dict()
    assert _ours_detecting(sd) == [case.arch]
    want = dict(expected or full)
    if case.rt_defaults:
        sig = inspect.signature(cls.__init__)
        want = {**{k: p.default for k, p in sig.parameters.items() if p.default is not inspect.Parameter.empty}, **want}
    case.params(case.infer(sd), want, False)
    desc = registered()[case.arch].arch.load(copy.copy(sd))
    desc.model.eval()
    x = torch.rand(*case.rt_input(full))
    with torch.no_grad():
        assert_close(desc.model(x), model(x), case.rt_atol)


@pytest.mark.parametrize("case", CASES, ids=lambda c: c.arch)
def test_descriptor(case: Case):
    entry = registered()[case.arch]
    info = entry.info
    assert declared()[case.arch] is info
    for k, v in case.info.items():
        assert getattr(info, k) == v, k
    # RRFormerSwinIR: an inspection sub-module, no checkpoint of its own; RawDenoiseUNet, DenoiseUNet: restore's own, not released
    if case.arch not in ("RRFormerSwinIR", "RawDenoiseUNet", "DenoiseUNet"):
        assert info.official is not None and info.official.repo.startswith("https://github.com/") and info.official.checkpoints
    assert not info.cpu_bf16 and not info.attention  # measured / fused only for spandrel's archs so far
    assert info.overlap >= 0 and info.context >= 0 and info.window >= 1
