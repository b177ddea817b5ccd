"""Issue acceptance, literally: every golden fixture through ``restore.load_model(<fixture>/weights.safetensors)``.

No architecture hint; strict loading; the official forward signature
(``m.model(*inputs)``); every output key within the fixture's atol.  Full-size
official layouts are detected by the whole registry (spandrel's architectures
plus ours) with the official hyper-parameters.
"""

import importlib
import json

import pytest
import spandrel
from safetensors.torch import load_file

import restore

from ..golden import assert_golden, meta_state_dict, shared_path

FIXTURES = {
    "drsformer": "DRSformer",
    "drsformer_nomefc": "DRSformerNoMEFC",
    "histoformer": "Histoformer",
    "restormer": "Restormer",
    "restormer_dualpixel": "Restormer",
    "hdr_transformer": "HDRTransformer",
    "sctnet": "SCTNet",
    "rawformer": "Rawformer",
    "rrformer": "RRFormer",
    "rrformer_swinir": "RRFormerSwinIR",
}
MODULES = {"DRSformer": "drsformer", "DRSformerNoMEFC": "drsformer", "Histoformer": "histoformer", "Restormer": "restormer_base",
           "HDRTransformer": "hdr_transformer", "SCTNet": "sctnet", "Rawformer": "rawformer", "RRFormer": "rrformer"}


@pytest.mark.parametrize("fixture", sorted(FIXTURES))
def test_load_model_reproduces_official_output(fixture):
    d = shared_path("golden", fixture)
    cfg = json.loads((d / "config.json").read_text())
    io = load_file(str(d / "io.safetensors"))
    m = restore.load_model(d / "weights.safetensors")  # Rawformer's head count comes from the sidecar config.json
    assert m.arch == FIXTURES[fixture]
    calls = {"output": None}
    if fixture == "rrformer_swinir":  # the dead branch, evaluated by the sub-module's own methods
        calls["features"] = lambda model, x: model.forward_features(x)
        calls["res"] = lambda model, x: model.forward_residual(x)
    for key in cfg["output_keys"]:
        assert_golden(m.model, [io[k] for k in cfg["forward_args"]], io[key], cfg["atol"], call=calls[key])


@pytest.mark.parametrize("fixture", sorted(set(FIXTURES) - {"rrformer_swinir"}))
def test_full_size_official_layouts_are_detected_with_official_hyperparameters(fixture):
    listing = json.loads((shared_path("golden", fixture) / "official_state_dict.json").read_text())
    import restore.models.archs  # noqa: F401  (registers ours)

    for name, conf in listing["configs"].items():
        sd = meta_state_dict(conf["state_dict"])
        claims = [a.architecture.id for a in spandrel.MAIN_REGISTRY.architectures("detection") if a.detect(sd)]
        assert claims and claims[0] == FIXTURES[fixture], (name, claims)
        mod = importlib.import_module(f"restore.models.archs.{MODULES[claims[0]]}")
        inferred = mod.infer_params(sd)
        for k, v in conf["kwargs"].items():
            if k in inferred and k not in ("n_heads",):  # n_heads: not in any state dict (see rawformer.py)
                got = inferred[k]
                norm = (lambda x: [list(i) if isinstance(i, tuple) else i for i in x] if isinstance(x, (list, tuple)) else x)
                assert norm(got) == norm(v) or got == v, (name, k, got, v)
