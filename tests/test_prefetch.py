"""Read-ahead: the next input decodes while the current one computes, without changing results or blame."""

import subprocess
import sys
import threading
from pathlib import Path

import cv2
import numpy as np

import restore.pipeline.runner as runner
from restore.pipeline import load_pipeline

from .test_crash import make_inputs

PIPE = "version: 1\nname: fast\nsteps:\n  - resize: {scale: 0.5}\n  - write: {path: '{stem}.png'}\n"


def test_inputs_after_the_first_are_decoded_in_the_read_ahead_thread(tmp_path, monkeypatch):
    inputs = make_inputs(tmp_path / "in", 4, 32)
    threads = {}
    real = runner.read

    def spy(path, *a, **kw):
        threads[Path(path).name] = threading.current_thread().name
        return real(path, *a, **kw)

    monkeypatch.setattr(runner, "read", spy)
    pipe = load_pipeline(PIPE)
    r = pipe.run(inputs, tmp_path / "out")
    assert r.ok and r.count("done") == 4
    assert threads["img000.png"] == threading.main_thread().name
    assert all(threads[f"img00{i}.png"].startswith("restore-read") for i in (1, 2, 3)), threads
    # same bytes as without read-ahead
    ref = load_pipeline(PIPE)
    for p in inputs:
        img = cv2.imread(str(p), cv2.IMREAD_UNCHANGED)[..., ::-1]
        np.testing.assert_array_equal(cv2.imread(str(tmp_path / "out" / p.name))[..., ::-1], ref(img))


def test_a_decode_error_during_read_ahead_is_reported_on_its_own_file(tmp_path):
    inputs = make_inputs(tmp_path / "in", 3, 32)
    bad = tmp_path / "in" / "img001.png"
    bad.write_bytes(b"\x89PNG\r\n\x1a\n" + b"\0" * 40)
    r = load_pipeline(PIPE).run(inputs, tmp_path / "out")
    status = {x.input.name: x.status for x in r.results}
    assert status == {"img000.png": "done", "img001.png": "failed", "img002.png": "done"}
    assert "img001.png" in r.failed[0].error


def test_a_decoder_crash_during_read_ahead_is_not_blamed_on_the_item_before(tmp_path):
    """The worker child dies while decoding the next file ahead: the current item is retried alone
    and succeeds; the crashing file fails on its own."""
    inputs = make_inputs(tmp_path / "in", 3, 32)
    crash = tmp_path / "in" / "img001.png"
    hook = tmp_path / "hook"
    hook.mkdir()
    # sitecustomize runs in the CLI and in its worker child: decoding img001 kills the process
    (hook / "sitecustomize.py").write_text(
        "import os, time\n"
        "import restore.io as io, restore.pipeline.runner as r\n"
        "_real = r.read\n"
        "def _read(path, *a, **k):\n"
        "    if str(path).endswith('img001.png'):\n"
        "        os._exit(9)\n"
        "    if str(path).endswith('img000.png'):\n"
        "        time.sleep(1.0)  # img000 is still being processed when the read-ahead crashes\n"
        "    return _real(path, *a, **k)\n"
        "r.read = _read\n"
    )
    (tmp_path / "p.yaml").write_text(PIPE)
    import os

    env = dict(os.environ, PYTHONPATH=f"{hook}{os.pathsep}{os.environ.get('PYTHONPATH', '')}")
    res = subprocess.run([sys.executable, "-m", "restore.cli", "run", str(tmp_path / "p.yaml"), *map(str, inputs),
                          "-o", str(tmp_path / "out"), "--timeout", "60"], capture_output=True, text=True, env=env, timeout=180)
    out = res.stdout + res.stderr
    assert res.returncode == 1, out
    assert "2 done, 0 skipped, 1 failed" in out, out
    assert "img001.png" in out and "crashed" in out, out
    assert sorted(p.name for p in (tmp_path / "out").glob("*.png")) == ["img000.png", "img002.png"]
    assert crash.exists()
