import os
import shutil

import pytest
import torch
import yaml
from safetensors.torch import load_file, save_file

from restore.errors import ModelError
import importlib

cat = importlib.import_module("restore.models.catalog")  # the module (restore.models.catalog is also a function name)
from restore.models import load_model
from restore.models.loader import load_state_dict


@pytest.fixture
def weights_dir(tmp_path, monkeypatch):
    """A private weights folder searched first, with a copy of the shipped DAT-light x2."""
    d = tmp_path / "w"
    d.mkdir()
    monkeypatch.setenv("RESTORE_WEIGHTS", str(d))
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    cat.refresh()
    yield d
    cat.refresh()


def test_catalogue_lists_shipped_dat_light():
    cat.refresh()
    names = {e.name: e for e in cat.catalog()}
    for s in (2, 3, 4):
        e = names[f"dat-light-x{s}"]
        assert e.available and e.scale == s and e.licence == "Apache-2.0" and len(e.sha256) == 64


def test_load_by_name_gives_working_dat_light():
    m = load_model("dat-light-x2")
    assert m.arch == "DAT" and m.scale == 2 and m.info.task == "super-resolution"
    with torch.inference_mode():
        y = m.module(torch.rand(1, 3, 16, 20))
    assert y.shape == (1, 3, 32, 40)


def test_rebuilt_buffers_equal_a_fresh_construction():
    sd, meta = load_state_dict(cat.resolve("dat-light-x2")[1])
    assert meta["restore.rebuild_class"].startswith("spandrel.architectures.DAT")
    stored = load_file(str(cat.resolve("dat-light-x2")[1]))
    assert set(stored) < set(sd)  # buffers were dropped from the file and rebuilt
    assert any(k.endswith("attn_mask_0") for k in set(sd) - set(stored))


def test_tampered_catalogue_file_is_refused(weights_dir):
    entry, path = cat.resolve("dat-light-x2")
    shutil.copy(path, weights_dir / entry.file)
    data = bytearray((weights_dir / entry.file).read_bytes())
    data[-100] ^= 0xFF
    (weights_dir / entry.file).write_bytes(bytes(data))
    cat.refresh()
    with pytest.raises(ModelError, match="does not match the manifest"):
        load_model("dat-light-x2")


def test_unknown_name_and_missing_file(weights_dir):
    with pytest.raises(ModelError, match="unknown model 'nope'"):
        load_model("nope")
    (weights_dir / "MANIFEST").write_text(yaml.safe_dump({"version": 1, "models": [
        {"name": "ghost", "file": "ghost.safetensors", "sha256": "0" * 64, "arch": "DAT", "task": "sr", "recipe": "python make_ghost.py"}]}))
    cat.refresh()
    with pytest.raises(ModelError, match="make_ghost.py"):
        load_model("ghost")


class _Evil:
    def __reduce__(self):
        return (os.system, ("echo pwned > /tmp/restore-pwned",))


def test_pickle_with_code_is_refused(tmp_path):
    torch.save({"params": {"w": torch.zeros(1)}, "evil": _Evil()}, tmp_path / "evil.pth")
    with pytest.raises(ModelError, match="code execution"):
        load_model(tmp_path / "evil.pth")
    assert not os.path.exists("/tmp/restore-pwned")


def test_official_pth_layout_loads(tmp_path):
    sd, _ = load_state_dict(cat.resolve("dat-light-x4")[1])
    torch.save({"params": {"module." + k: v for k, v in sd.items()}}, tmp_path / "DAT_light_x4.pth")
    m = load_model(tmp_path / "DAT_light_x4.pth")
    assert m.arch == "DAT" and m.scale == 4


def test_unrecognised_architecture(tmp_path):
    save_file({"foo.weight": torch.zeros(3, 3)}, str(tmp_path / "x.safetensors"))
    with pytest.raises(ModelError, match="architecture not recognised"):
        load_model(tmp_path / "x.safetensors")


def test_rebuild_class_outside_known_modules_is_refused(tmp_path):
    save_file({"w": torch.zeros(1)}, str(tmp_path / "x.safetensors"), metadata={"restore.rebuild_class": "os:system", "restore.rebuild_kwargs": "{}"})
    with pytest.raises(ModelError, match="refuses to rebuild"):
        load_model(tmp_path / "x.safetensors")


def test_missing_checkpoint_and_bad_suffix(tmp_path):
    with pytest.raises(ModelError, match="not found"):
        load_model(tmp_path / "none.safetensors")
    (tmp_path / "m.onnx").write_bytes(b"x")
    with pytest.raises(ModelError, match="unsupported checkpoint type"):
        load_model(tmp_path / "m.onnx")


def test_docs_architecture_table_is_generated_from_the_descriptors():
    """docs/models.md's table is ``table_markdown()`` (regenerate: python -m restore.models.archs docs/models.md)."""
    from pathlib import Path

    from restore.models.archs import architectures, declared, table_markdown
    from restore.models.archs._table import BEGIN, END

    text = (Path(__file__).resolve().parents[1] / "docs" / "models.md").read_text()
    assert text[text.index(BEGIN) + len(BEGIN) : text.index(END)].strip() == table_markdown().strip()
    rows = {r["arch"]: r for r in architectures()}
    assert set(rows) == set(declared())
    assert rows["DAT"]["cpu_bf16"] and rows["DAT"]["fused_attention"] and not rows["HAT"]["cpu_bf16"]
    assert "Rain200H" in rows["DRSformer"]["checkpoints"] and rows["HDRTransformer"]["frames"] == 3


def test_load_model_applies_the_descriptors_facts():
    """The loaded model carries its descriptor: spandrel's own architectures keep the declared tiling facts."""
    m = load_model("dat-light-x2")
    assert m.info.overlap == 32 and m.info.window == 32 and m.info.cpu_bf16_ok and m.info.attention
    assert m.tile_input_channels == m.input_channels == 3
    assert m.forward_for(torch.device("cpu")) is m.module
