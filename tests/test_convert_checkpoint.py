"""data_tools/convert_checkpoint.py: official checkpoint -> verified safetensors + MANIFEST entry.

Golden fixtures (``../shared/golden``) are wrapped the way the official code
saves them, converted into a temporary ``--out`` folder (never the repo's
``weights/``), and the written file must reproduce the golden output through
``restore.models.load_model``.  Refusals: wrong ``--sha256``, a pickle that
needs code execution, unknown architecture, a state dict that does not load
strictly, a manifest entry of the same name with another sha256.
"""

from __future__ import annotations

import importlib.util
import shlex
from pathlib import Path

import pytest
import torch
import yaml
from safetensors import safe_open

import restore.models
from restore.models.catalog import refresh
from restore.models.loader import sha256_file
from tests.golden import assert_golden, load_golden

torch.set_num_threads(1)

_SCRIPT = Path(__file__).resolve().parents[1] / "data_tools" / "convert_checkpoint.py"


def _load_converter():
    spec = importlib.util.spec_from_file_location("convert_checkpoint", _SCRIPT)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


cc = _load_converter()


# fixture -> (architecture id, how the official code wraps the state dict; see shared/golden/NOTES.md)
CASES = {
    "drsformer": ("DRSformer", lambda sd: {"params": sd}),  # basicsr save_network
    "hdr_transformer": (  # train.py: DataParallel model, {'epoch', 'state_dict', 'optimizer'}
        "HDRTransformer",
        lambda sd: {"epoch": 1, "state_dict": {"module." + k: v for k, v in sd.items()}, "optimizer": {}},
    ),
    "rrformer": ("RRFormer", lambda sd: {"icnn": sd, "epoch": 3}),  # ERRNetModel.save
}
TASKS = {"drsformer": "derain", "hdr_transformer": "hdr-merge", "rrformer": "reflection"}


def _argv(src: Path, name: str, out: Path, *extra: str) -> list[str]:
    return [str(src), "--name", name, "--source", f"golden fixture {name}", "--licence", "MIT", "--out", str(out), *extra]


def _official_pth(tmp_path: Path, fixture: str) -> tuple[dict, dict, dict, Path]:
    config, weights, io = load_golden(fixture)
    path = tmp_path / f"{fixture}_official.pth"
    torch.save(CASES[fixture][1](weights), path)
    return config, weights, io, path


def _manifest(out: Path) -> dict:
    return {m["name"]: m for m in yaml.safe_load((out / "MANIFEST").read_text())["models"]}


def _leftovers(out: Path) -> list[str]:
    return sorted(p.name for p in out.iterdir() if p.name.startswith(".") or p.name.endswith(".tmp"))


@pytest.mark.parametrize("fixture", sorted(CASES))
def test_convert_golden(tmp_path: Path, fixture: str):
    config, weights, io, src = _official_pth(tmp_path, fixture)
    out = tmp_path / "weights"
    name = f"{fixture.replace('_', '-')}-test"
    argv = _argv(src, name, out, "--sha256", sha256_file(src).upper(), "--when", "testing only")
    assert cc.main(argv) == 0

    written = out / f"{name}.safetensors"
    assert sorted(p.name for p in out.iterdir()) == ["MANIFEST", written.name]  # no temp files left
    with safe_open(str(written), framework="pt") as f:
        meta = f.metadata()
        keys = set(f.keys())
        tensors = {k: f.get_tensor(k) for k in keys}
    assert keys == set(weights)  # plain official key names: no 'module.' / 'params' wrapping
    for k, v in weights.items():
        assert torch.equal(tensors[k], v), k
    assert meta == {
        "restore.arch": CASES[fixture][0],
        "restore.source": f"golden fixture {name}",
        "restore.licence": "MIT",
        "restore.input_sha256": sha256_file(src),
    }

    entry = _manifest(out)[name]
    assert entry == {
        "name": name,
        "file": written.name,
        "sha256": sha256_file(written),
        "arch": CASES[fixture][0],
        "task": TASKS[fixture],
        "scale": 1,
        "licence": "MIT",
        "source": f"golden fixture {name}",
        "recipe": "python data_tools/convert_checkpoint.py " + shlex.join(argv),
        "when": "testing only",
    }

    model = restore.models.load_model(written)
    assert model.arch == CASES[fixture][0]
    assert_golden(model.module, [io[k] for k in config["forward_args"]], io["output"], config["atol"])


def test_rerun_force_and_catalogue(tmp_path: Path, monkeypatch):
    """Same input again: identical bytes, accepted.  Other metadata: refused unless --force."""
    _, _, io, src = _official_pth(tmp_path, "drsformer")
    out = tmp_path / "w"
    cc.main(_argv(src, "drs-x", out, "--task", "derain-test"))
    first = sha256_file(out / "drs-x.safetensors")
    cc.main(_argv(src, "drs-x", out, "--task", "derain-test"))  # deterministic file -> same sha256, no conflict
    assert sha256_file(out / "drs-x.safetensors") == first
    assert _manifest(out)["drs-x"]["task"] == "derain-test"

    changed = _argv(src, "drs-x", out) + ["--source", "another source"]
    with pytest.raises(SystemExit, match=r"MANIFEST: entry 'drs-x' has sha256 .*--force"):
        cc.main(changed)
    assert sha256_file(out / "drs-x.safetensors") == first and _manifest(out)["drs-x"]["sha256"] == first
    assert _leftovers(out) == []
    cc.main(changed + ["--force"])
    entry = _manifest(out)["drs-x"]
    assert entry["sha256"] == sha256_file(out / "drs-x.safetensors") != first
    assert entry["source"] == "another source" and entry["task"] == "derain"

    # the entry resolves as a catalogue name (sha256 verified by the catalogue)
    monkeypatch.setenv("RESTORE_WEIGHTS", str(out))
    refresh()
    try:
        model = restore.models.load_model("drs-x")
        assert model.arch == "DRSformer" and model.source == out / "drs-x.safetensors"
    finally:
        monkeypatch.delenv("RESTORE_WEIGHTS")
        refresh()


class _NotAllowed:
    """A custom class: unpickling it would import and run code from this module."""

    def __init__(self) -> None:
        self.payload = [1, 2, 3]


def test_refusals(tmp_path: Path):
    _, weights, _, src = _official_pth(tmp_path, "drsformer")
    out = tmp_path / "w"

    with pytest.raises(SystemExit, match=r"drsformer_official\.pth: sha256 [0-9a-f]{64} does not match --sha256"):
        cc.main(_argv(src, "a", out, "--sha256", "0" * 64))

    pickled = tmp_path / "custom.pth"
    torch.save({"params": weights, "extra": _NotAllowed()}, pickled)
    with pytest.raises(SystemExit, match=r"custom\.pth: .*code execution.*refused"):
        cc.main(_argv(pickled, "b", out))

    unknown = tmp_path / "unknown.pth"
    g = torch.Generator().manual_seed(0)
    torch.save({"encoder.weight": torch.randn(8, 3, 3, 3, generator=g), "decoder.bias": torch.randn(3, generator=g)}, unknown)
    with pytest.raises(SystemExit, match=r"unknown\.pth: architecture not recognised"):
        cc.main(_argv(unknown, "c", out))

    partial = tmp_path / "partial.pth"
    missing = next(k for k in sorted(weights) if k.endswith("attn.temperature"))
    torch.save({"params": {k: v for k, v in weights.items() if k != missing}}, partial)
    with pytest.raises(SystemExit, match=rf"partial\.pth: does not load strictly into DRSformer: .*{missing}"):
        cc.main(_argv(partial, "d", out))

    with pytest.raises(SystemExit, match=r"nothere\.pth: checkpoint not found"):
        cc.main(_argv(tmp_path / "nothere.pth", "e", out))
    with pytest.raises(SystemExit, match=r"--name"):
        cc.main(_argv(src, "../escape", out))

    assert not out.exists()  # nothing was written by any refusal


def test_probe_input_sizes():
    """The verification input satisfies each descriptor (18 stacked channels for HDR, fixed grid for Rawformer)."""
    from restore.models.archs import info_for
    from restore.models.loader import detect

    for fixture, (c, hw) in {"hdr_transformer": (18, (16, 24)), "rawformer": (3, (32, 48)), "rrformer": (19, (32, 34))}.items():
        _, weights, _ = load_golden(fixture)
        desc = detect(weights)
        x = cc.probe_input(desc, info_for(str(desc.architecture.id)))
        assert x.dtype == torch.float32 and x.shape == (1, c, *hw), fixture
        assert desc.size_requirements.check(x.shape[3], x.shape[2])
