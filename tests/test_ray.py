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
