"""The command line: batch behaviour users rely on (bad files, skipping, exit codes)."""

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from restore.image import SRGB, Image, Metadata
from restore.io import TMP_MARK, read, write

ROOT = Path(__file__).resolve().parents[1]


def restore_cli(*args, cwd=None):
    return subprocess.run([sys.executable, "-m", "restore.cli", *map(str, args)], capture_output=True, text=True, cwd=cwd, timeout=300)


@pytest.fixture
def batch(tmp_path, photo):
    d = tmp_path / "in"
    d.mkdir()
    for i in range(2):
        write(Image(np.roll(photo[:16, :16], i, axis=0).copy(), SRGB, Metadata(bit_depth=8)), d / f"good{i}.png")
    data = (d / "good0.png").read_bytes()
    (d / "cut.png").write_bytes(data[: len(data) // 2])
    (d / "junk.dng").write_bytes(b"\x00garbage" * 300)
    (d / "notes.txt").write_text("ignored: not an image suffix")
    pipe = tmp_path / "p.yaml"
    pipe.write_text("version: 1\nname: t\nsteps:\n  - model: {name: dat-light-x2, tile: 0}\n  - write: {path: '{stem}_x2.png'}\n")
    return d, pipe, tmp_path / "out"


def test_bad_files_are_reported_and_do_not_stop_the_batch(batch):
    d, pipe, out = batch
    r = restore_cli("run", pipe, d, "-o", out)
    assert r.returncode == 1, r.stdout + r.stderr
    assert "2 done, 0 skipped, 2 failed" in r.stdout
    assert "cut.png: truncated PNG" in r.stdout
    assert "junk.dng: not a RAW file" in r.stdout
    assert "Traceback" not in r.stdout + r.stderr
    names = sorted(p.name for p in out.iterdir() if not p.name.startswith("."))  # the hidden journal lives there too
    assert names == ["good0_x2.png", "good1_x2.png"]  # nothing partial, nothing for bad files
    assert read(out / "good0_x2.png").pixels.shape == (32, 32, 3)


def test_rerun_skips_existing_outputs_unless_overwrite(batch):
    d, pipe, out = batch
    restore_cli("run", pipe, d / "good0.png", "-o", out)
    mtime = (out / "good0_x2.png").stat().st_mtime_ns
    r = restore_cli("run", pipe, d / "good0.png", "-o", out)
    assert r.returncode == 0 and "0 done, 1 skipped" in r.stdout
    assert (out / "good0_x2.png").stat().st_mtime_ns == mtime
    r = restore_cli("run", "--overwrite", pipe, d / "good0.png", "-o", out)
    assert "1 done" in r.stdout and not any(TMP_MARK in p.name for p in out.iterdir())


def test_usage_errors_are_one_line_exit_2(tmp_path, batch):
    d, pipe, out = batch
    bad = tmp_path / "bad.yaml"
    bad.write_text("version: 1\nsteps:\n  - model: {name: dat-light-x2, tile: abc}\n")
    r = restore_cli("run", bad, d, "-o", out)
    assert r.returncode == 2 and "bad.yaml:3: steps[0].model.tile" in r.stderr and "Traceback" not in r.stderr
    r = restore_cli("run", pipe, tmp_path / "missing", "-o", out)
    assert r.returncode == 2 and "no such file or folder" in r.stderr
    unknown = tmp_path / "u.yaml"
    unknown.write_text("version: 1\nsteps:\n  - model: {name: no-such-model}\n  - write: {path: '{stem}.png'}\n")
    r = restore_cli("run", unknown, d, "-o", out)
    assert r.returncode == 2 and "unknown model 'no-such-model'" in r.stderr


def test_validate_models_info_eval(tmp_path, batch):
    d, pipe, out = batch
    r = restore_cli("validate", ROOT / "pipelines" / "raw-sr-exr.yaml")
    assert r.returncode == 0 and "valid" in r.stdout
    r = restore_cli("models", "--json")
    data = json.loads(r.stdout)
    rows = {m["name"]: m for m in data["catalogue"]}
    assert rows["dat-light-x4"]["available"] and rows["dat-light-x4"]["licence"] == "Apache-2.0"
    archs = {a["arch"]: a for a in data["architectures"]}
    assert "Rain200H" in archs["DRSformer"]["checkpoints"] and archs["HDRTransformer"]["frames"] == 3
    r = restore_cli("info", "--json", ROOT / "examples" / "coffee_raw.dng")
    info = json.loads(r.stdout)[0]
    assert info["cfa_pattern"] == "RGGB" and info["white_level"] == 16383 and info["encoding"].startswith("linear")
    r = restore_cli("info", d / "cut.png")
    assert r.returncode == 1 and "truncated" in r.stderr
    # eval: an output folder against itself is infinitely good; against a shifted copy, finite
    (tmp_path / "gt").mkdir()
    write(read(d / "good0.png"), tmp_path / "gt" / "good0.png")
    (tmp_path / "o").mkdir()
    write(read(d / "good1.png"), tmp_path / "o" / "good0_x1.png")
    r = restore_cli("eval", "--json", tmp_path / "o", tmp_path / "gt")
    res = json.loads(r.stdout)
    assert len(res["images"]) == 1 and 10 < res["mean_psnr"] < 60
