#!/usr/bin/env python3
"""A local two-node Ray cluster: ``restore run --executor ray`` survives a lost node, and its throughput.

Starts a Ray head and a second node on this machine (``ray start`` twice, 1 CPU each, in a temporary
folder, token authentication off), and:

* ``--kill`` (what ``tests/test_ray.py`` runs): 40 small images through a model pipeline with
  ``--executor ray --address ...``; once a few outputs exist the second node's raylet gets ``kill -9``;
  then checks that the run completed, that every output exists exactly once and decodes, that the
  journal has all 40 done, and that a rerun does nothing;
* ``--throughput``: the same 40 images (larger) with 1 torch thread per worker through a local run
  (``--executor local``), a 1-node Ray run and a 2-node Ray run, one after the other on an otherwise idle
  machine, wall time of each ``restore run`` (Ray start-up included).

Usage:
    python benchmarks/ray_cluster.py --kill
    python benchmarks/ray_cluster.py --throughput [--size 512] [--n 40]
"""

from __future__ import annotations

import argparse
import os
import shutil
import signal
import socket
import sqlite3
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import cv2
import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def ray_bin() -> str:
    return str(Path(sys.executable).parent / "ray")


class Cluster:
    """A Ray head (+ optionally a second node) on this machine, stopped on exit."""

    def __init__(self, root: Path, nodes: int = 2):
        self.root = root
        self.port = free_port()
        self.env = {**os.environ, "RAY_AUTH_MODE": "disabled", "RAY_USAGE_STATS_ENABLED": "0"}
        # Ray's socket paths must stay under 107 bytes (AF_UNIX): a short folder of its own in /tmp
        self.tmp = Path(tempfile.mkdtemp(prefix="ray-", dir="/tmp"))
        self._run([ray_bin(), "start", "--head", "--num-cpus", "1", "--port", str(self.port), "--include-dashboard", "false",
                   "--disable-usage-stats", "--temp-dir", str(self.tmp)])
        for _ in range(nodes - 1):
            self._run([ray_bin(), "start", "--address", self.address, "--num-cpus", "1", "--disable-usage-stats"])

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.port}"

    def _run(self, cmd):
        r = subprocess.run(cmd, env=self.env, capture_output=True, text=True, timeout=180)
        if r.returncode != 0:
            raise RuntimeError(f"{' '.join(cmd)} failed: {r.stderr[-2000:]}")

    def raylets(self) -> dict[int, bool]:
        """pid -> is the head's raylet, for the raylets of this cluster's session folder."""
        out = {}
        for d in os.listdir("/proc"):
            if not d.isdigit():
                continue
            try:
                args = Path(f"/proc/{d}/cmdline").read_bytes().split(b"\0")
            except OSError:
                continue
            if args and args[0].endswith(b"raylet/raylet") and any(str(self.tmp).encode() in a for a in args):
                out[int(d)] = any(b"__internal_head__" in a for a in args)
        return out

    def kill_second_node(self) -> int:
        (pid,) = [p for p, head in self.raylets().items() if not head]
        os.kill(pid, signal.SIGKILL)
        return pid

    def processes(self) -> list[int]:
        """Every process of this cluster - those with its session folder in their arguments, and their
        descendants (Ray's agents rename themselves) - and none of another Ray on the machine."""
        mine, parent = set(), {}
        for d in os.listdir("/proc"):
            if not d.isdigit() or int(d) == os.getpid():
                continue
            try:
                if str(self.tmp).encode() in Path(f"/proc/{d}/cmdline").read_bytes():
                    mine.add(int(d))
                parent[int(d)] = int(Path(f"/proc/{d}/stat").read_text().rsplit(")", 1)[1].split()[1])
            except (OSError, ValueError, IndexError):
                pass
        grew = True
        while grew:
            more = {p for p, pp in parent.items() if pp in mine} - mine
            grew = bool(more)
            mine |= more
        return sorted(mine)

    def stop(self):
        """Stop this cluster only (``ray stop`` would stop every Ray on the machine)."""
        for _ in range(3):
            pids = self.processes()
            if not pids:
                break
            for pid in pids:
                try:
                    os.kill(pid, signal.SIGKILL)
                except OSError:
                    pass
            time.sleep(0.5)
        shutil.rmtree(self.tmp, ignore_errors=True)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.stop()


def tiny_model(path: Path, feat: int, convs: int) -> Path:
    from tests.test_compile import tiny_compact

    return tiny_compact(path, feat=feat, convs=convs, scale=1)


def make_inputs(d: Path, n: int, size: int) -> list[Path]:
    d.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    out = []
    for i in range(n):
        p = d / f"img{i:03d}.png"
        cv2.imwrite(str(p), (rng.random((size, size, 3)) * 255).astype(np.uint8))
        out.append(p)
    return out


def pipeline(root: Path, model: Path) -> Path:
    p = root / "p.yaml"
    p.write_text(f"version: 1\nname: ray-test\nsteps:\n  - model: {{name: {model}, tile: 0, precision: fp32, threads: 1}}\n"
                 "  - write: {path: '{stem}_r.png'}\n")
    return p


def restore_run(pipe: Path, inp: Path, out: Path, *extra, env=None, wait=True):
    cmd = [sys.executable, "-m", "restore.cli", "run", str(pipe), str(inp), "-o", str(out), "-q", *map(str, extra)]
    if wait:
        return subprocess.run(cmd, capture_output=True, text=True, timeout=900, env=env)
    return subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env)


def finals(out: Path) -> list[Path]:
    return sorted(p for p in out.glob("*.png") if not p.name.startswith("."))


def kill_scenario(root: Path, n: int = 40, size: int = 96) -> dict:
    """The lost-node run; returns facts for the caller to check (and raises on a broken cluster)."""
    inp = root / "in"
    make_inputs(inp, n, size)
    pipe = pipeline(root, tiny_model(root / "m.safetensors", feat=32, convs=6))
    out = root / "out"
    with Cluster(root, nodes=2) as c:
        env = {**os.environ, "RAY_AUTH_MODE": "disabled"}
        proc = restore_run(pipe, inp, out, "--executor", "ray", "--address", c.address, env=env, wait=False)
        deadline = time.monotonic() + 600
        while len(finals(out)) < 6 and proc.poll() is None and time.monotonic() < deadline:
            time.sleep(0.1)
        killed_at = len(finals(out))
        killed = c.kill_second_node() if proc.poll() is None else None
        text, _ = proc.communicate(timeout=900)
        rerun = restore_run(pipe, inp, out, "--executor", "ray", "--address", c.address, env=env)
    db = sqlite3.connect(out / ".restore-journal.sqlite")
    states = [s for (s,) in db.execute("SELECT state FROM items")]
    db.close()
    return {"rc": proc.returncode, "log": text, "killed_pid": killed, "killed_after_outputs": killed_at, "outputs": finals(out),
            "decoded": [cv2.imread(str(p)) is not None for p in finals(out)], "journal": states, "rerun": rerun, "n": n,
            "temp_files": [p for p in out.iterdir() if p.name.startswith(".restore-tmp")]}


def throughput(root: Path, n: int, size: int) -> None:
    inp = root / "in"
    make_inputs(inp, n, size)
    pipe = pipeline(root, tiny_model(root / "m.safetensors", feat=48, convs=8))
    env = {**os.environ, "RAY_AUTH_MODE": "disabled", "OMP_NUM_THREADS": "1"}
    rows = []
    t0 = time.perf_counter()
    r = restore_run(pipe, inp, root / "local", env=env)
    rows.append(("local (1 process, 1 torch thread)", time.perf_counter() - t0, r.returncode))
    for nodes in (1, 2):
        with Cluster(root / f"c{nodes}", nodes=nodes) as c:
            t0 = time.perf_counter()
            r = restore_run(pipe, inp, root / f"ray{nodes}", "--executor", "ray", "--address", c.address, env=env)
            rows.append((f"Ray, {nodes} node{'s' if nodes > 1 else ''} x 1 CPU", time.perf_counter() - t0, r.returncode))
    base = rows[0][1]
    print(f"{n} images {size}x{size}, tiny Compact x1 (48 features, 8 convs), threads 1")
    print("| run | wall time | vs local |")
    print("|---|---|---|")
    for name, s, rc in rows:
        print(f"| {name} | {s:.1f} s{'' if rc == 0 else f' (exit {rc})'} | {base / s:.2f}x |")


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--kill", action="store_true")
    ap.add_argument("--throughput", action="store_true")
    ap.add_argument("--n", type=int, default=40)
    ap.add_argument("--size", type=int, default=512)
    args = ap.parse_args(argv)
    root = Path(tempfile.mkdtemp(prefix="restore-ray-"))
    try:
        if args.kill:
            f = kill_scenario(root / "kill", args.n)
            print(f"exit {f['rc']}; second node's raylet (pid {f['killed_pid']}) killed after {f['killed_after_outputs']} outputs; "
                  f"{len(f['outputs'])} outputs, {sum(f['decoded'])} decode; journal {f['journal'].count('done')} done; "
                  f"rerun: {f['rerun'].stdout.strip().splitlines()[-1] if f['rerun'].stdout.strip() else f['rerun'].stderr[-300:]}")
        if args.throughput:
            throughput(root / "tp", args.n, args.size)
    finally:
        shutil.rmtree(root, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
