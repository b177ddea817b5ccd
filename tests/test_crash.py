"""`restore run` killed at random points, hung by a pathological input, or stopped by a signal.

* kill -9 at random points (>= 10 trials): never a partial or corrupt file
  under a final name; a rerun completes every file and redoes none that was
  done (same inode and mtime for every output that existed at each kill).
* A stall limit: an item that reports no progress (one whole-image forward
  over a large photo, no tiles; FIFOs, the old stand-in, are now refused by
  name) is failed with "timed out: no progress for N s" and the batch goes on.
* SIGTERM / SIGINT: the current item is abandoned cleanly (no temporary file,
  journal row back to pending), exit 130 with a summary.
"""

import os
import random
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import cv2
import numpy as np
import pytest

from restore.io import TMP_MARK
from restore.journal import JOURNAL_NAME

PIPE = "version: 1\nname: fast\nsteps:\n  - resize: {scale: 0.5}\n  - write: {path: '{stem}.png'}\n"


def cmd(*args):
    return [sys.executable, "-m", "restore.cli", *map(str, args)]


def make_inputs(d: Path, n: int, size: int = 48) -> list[Path]:
    d.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    out = []
    for i in range(n):
        p = d / f"img{i:03d}.png"
        cv2.imwrite(str(p), (rng.random((size, size, 3)) * 255).astype(np.uint8))
        out.append(p)
    return out


def stalling(tmp_path: Path, size: int = 900) -> tuple[Path, Path]:
    """A pipeline whose model runs on the whole image (tile 0: no progress until the forward ends) and an input
    big enough that this takes several seconds: a stall, as a hung decoder looks to the worker's parent."""
    from tests.test_compile import tiny_compact

    w = tiny_compact(tmp_path / "slow.safetensors", feat=32, convs=8, scale=1)
    pipe = tmp_path / "stall.yaml"
    pipe.write_text(f"version: 1\nname: fast\nsteps:\n  - model: {{name: {w}, tile: 0, precision: fp32, threads: 1}}\n"
                    "  - write: {path: '{stem}.png'}\n")
    hang = tmp_path / "in" / "hang.png"
    hang.parent.mkdir(parents=True, exist_ok=True)
    cv2.imwrite(str(hang), (np.random.default_rng(1).random((size, size, 3)) * 255).astype(np.uint8))
    return pipe, hang


def finals(out: Path) -> list[Path]:
    return sorted(p for p in out.glob("*.png") if not p.name.startswith("."))


def rows(out: Path, starting: bool = False) -> dict[str, tuple[str, int]]:
    """Journal rows by input name; ``starting``: the run may not have created its table yet ({} then)."""
    db = sqlite3.connect(out / JOURNAL_NAME)
    try:
        return {Path(p).name: (s, a) for p, s, a in db.execute("SELECT path, state, attempts FROM items")}
    except sqlite3.OperationalError:
        if starting:
            return {}
        raise
    finally:
        db.close()


def check_finals(out: Path, size: int) -> dict[str, tuple[int, int]]:
    """Every final-named output decodes to the right size; returns name -> (inode, mtime_ns)."""
    snap = {}
    for p in finals(out):
        a = cv2.imread(str(p), cv2.IMREAD_UNCHANGED)
        assert a is not None and a.shape == (size // 2, size // 2, 3), f"partial or corrupt output {p.name}"
        st = p.stat()
        snap[p.name] = (st.st_ino, st.st_mtime_ns)
    return snap


def test_kill_9_at_random_points_never_leaves_partial_outputs_and_resumes(tmp_path):
    n, size = 40, 48
    make_inputs(tmp_path / "in", n, size)
    (tmp_path / "p.yaml").write_text(PIPE)
    out = tmp_path / "out"
    rnd = random.Random(5)
    seen: dict[str, tuple[int, int]] = {}
    kills = 0
    for trial in range(10):
        worker = trial % 4 == 3  # mostly in-process (fast start), some through the timeout worker
        args = cmd("run", tmp_path / "p.yaml", tmp_path / "in", "-o", out, "-q", "--timeout", "60" if worker else "0")
        before = len(finals(out))
        target = min(n - 1, before + rnd.randint(1, 5))
        proc = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        deadline = time.monotonic() + 60
        if trial == 0:
            time.sleep(rnd.uniform(0.2, 1.0))  # most likely during start-up
        else:
            while len(finals(out)) < target and proc.poll() is None and time.monotonic() < deadline:
                time.sleep(rnd.uniform(0, 0.004))
        if proc.poll() is None:
            os.kill(proc.pid, signal.SIGKILL)
            kills += 1
        proc.wait(30)
        time.sleep(0.05)  # the worker (if any) dies with its parent
        snap = check_finals(out, size)
        for name, st in seen.items():
            assert snap[name] == st, f"{name} was redone after it was done"
        seen.update(snap)
    assert kills >= 8
    r = subprocess.run(cmd("run", tmp_path / "p.yaml", tmp_path / "in", "-o", out, "--timeout", "0"), capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stdout + r.stderr
    snap = check_finals(out, size)
    assert len(snap) == n
    for name, st in seen.items():
        assert snap[name] == st, f"{name} was redone after it was done"
    j = rows(out)
    assert len(j) == n and all(s == "done" for s, _ in j.values())
    # each kill interrupts at most one item: at most that many second attempts
    assert sum(a for _, a in j.values()) <= n + kills
    assert not [p for p in out.iterdir() if TMP_MARK in p.name]


def test_time_limit_fails_a_hanging_input_and_the_batch_goes_on(tmp_path):
    inputs = make_inputs(tmp_path / "in", 2, 16)
    pipe, hang = stalling(tmp_path)
    out = tmp_path / "out"
    t0 = time.monotonic()
    r = subprocess.run(cmd("run", pipe, inputs[0], hang, inputs[1], "-o", out, "--timeout", "1.5"), capture_output=True, text=True, timeout=120)
    assert r.returncode == 1, r.stdout + r.stderr
    assert "2 done, 0 skipped, 1 failed" in r.stdout
    assert "hang.png: timed out: no progress for 1.5 s" in r.stdout
    assert "Traceback" not in r.stdout + r.stderr
    assert sorted(p.name for p in finals(out)) == ["img000.png", "img001.png"]
    assert rows(out)["hang.png"] == ("failed", 1)
    assert time.monotonic() - t0 < 60


@pytest.mark.parametrize("sig,timeout", [(signal.SIGTERM, "30"), (signal.SIGINT, "0")])
def test_signal_abandons_the_current_item_cleanly(tmp_path, sig, timeout):
    inputs = make_inputs(tmp_path / "in", 2, 16)
    pipe, hang = stalling(tmp_path, 1400)
    out = tmp_path / "out"
    proc = subprocess.Popen(cmd("run", pipe, inputs[0], hang, inputs[1], "-o", out, "--timeout", timeout), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:  # wait until the slow item is the current one
        if (out / JOURNAL_NAME).exists() and rows(out, starting=True).get("hang.png", ("", 0))[0] == "running":
            break
        time.sleep(0.05)
    time.sleep(0.3)
    proc.send_signal(sig)
    stdout, stderr = proc.communicate(timeout=60)
    assert proc.returncode == 130, stdout + stderr
    assert "1 done, 0 skipped, 0 failed" in stdout and "interrupted" in stdout
    assert "Traceback" not in stdout + stderr
    j = rows(out)
    assert j["hang.png"] == ("pending", 0) and j["img000.png"] == ("done", 1) and "img001.png" not in j
    assert not [p for p in out.iterdir() if TMP_MARK in p.name]
