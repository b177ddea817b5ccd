"""Scale-out on Ray (issue 16): a local two-node cluster survives a killed node, every output lands once;
the executor's edges (Ray missing, an unreachable output folder)."""

from __future__ import annotations

import builtins
import sys
from pathlib import Path

import pytest

from restore.errors import RestoreError

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def test_without_ray_the_executor_says_how_to_install_it(monkeypatch):
    from restore.engine import make_executor
    from restore.pipeline import load_pipeline

    real = builtins.__import__

    def no_ray(name, *a, **k):
        if name == "ray" or name.startswith("ray."):
            raise ImportError("No module named 'ray'")
        return real(name, *a, **k)

    monkeypatch.setattr(builtins, "__import__", no_ray)
    ex = make_executor(load_pipeline({"version": 1, "steps": [{"resize": {"scale": 0.5}}]}), kind="ray")
    with pytest.raises(RestoreError, match=r'pip install -e "\.\[ray\]"'):
        ex.start()


def test_a_worker_checks_the_output_folder(tmp_path):
    from restore.engine.ray_executor import _Worker

    w = _Worker.__new__(_Worker)  # the check needs no pipeline
    assert w.check_output(str(tmp_path)) is None and not list(tmp_path.iterdir())
    assert w.check_output(str(tmp_path / "missing")) == "no such folder"


def test_a_two_node_cluster_loses_a_node_mid_run_and_every_output_lands_once(tmp_path):
    pytest.importorskip("ray", reason='Ray is not installed (pip install -e ".[ray]")')
    from benchmarks.ray_cluster import kill_scenario

    f = kill_scenario(tmp_path, n=40)
    assert f["rc"] == 0, f["log"][-3000:]
    assert f["killed_pid"] is not None and f["killed_after_outputs"] < 40  # the node died mid-run
    assert "40 done, 0 skipped, 0 failed" in f["log"]
    assert len(f["outputs"]) == 40 and all(f["decoded"])  # exactly once each, complete
    assert sorted(p.name for p in f["outputs"]) == [f"img{i:03d}_r.png" for i in range(40)]
    assert f["journal"] == ["done"] * 40 and not f["temp_files"]
    assert f["rerun"].returncode == 0 and "0 done, 40 skipped" in f["rerun"].stdout


def test_watch_on_ray_takes_a_burst_of_100_files_exactly_once(tmp_path):
    pytest.importorskip("ray", reason='Ray is not installed (pip install -e ".[ray]")')
    import os
    import signal
    import subprocess
    import time

    from benchmarks.ray_cluster import Cluster
    from tests.test_watch import PIPE, done_lines, encode, rows

    (tmp_path / "p.yaml").write_text(PIPE)
    d, out = tmp_path / "in", tmp_path / "out"
    d.mkdir()
    with Cluster(tmp_path / "cluster", nodes=2) as c:
        env = {**os.environ, "RAY_AUTH_MODE": "disabled"}
        proc = subprocess.Popen([sys.executable, "-m", "restore.cli", "watch", str(tmp_path / "p.yaml"), str(d), "-o", str(out),
                                 "--settle", "0.3", "--rescan", "2", "--executor", "ray", "--address", c.address],
                                stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env)
        try:
            deadline = time.monotonic() + 120
            while not ((out / "restore-watch.log").exists() and "watching" in (out / "restore-watch.log").read_text()):
                assert proc.poll() is None and time.monotonic() < deadline, proc.stdout.read() if proc.poll() is not None else "no start"
                time.sleep(0.2)
            names = [f"b{i:03d}.png" for i in range(100)]
            for i, n in enumerate(names):  # the burst: written in place, as a card reader would
                (d / n).write_bytes(encode(i))
            deadline = time.monotonic() + 240
            while len([p for p in out.glob("*.png") if not p.name.startswith(".")]) < 100 and time.monotonic() < deadline:
                assert proc.poll() is None, proc.stdout.read()
                time.sleep(0.3)
            time.sleep(2.5)  # a rescan and more events: nothing may run twice
        finally:
            proc.send_signal(signal.SIGTERM)
            text, _ = proc.communicate(timeout=120)
    assert sorted(p.name for p in out.glob("*.png") if not p.name.startswith(".")) == names, text[-2000:]
    j = rows(out)
    assert sorted(j) == names and all(v == ("done", 1) for v in j.values())
    counts = done_lines(out)
    assert all(counts.get(n) == 1 for n in names)
