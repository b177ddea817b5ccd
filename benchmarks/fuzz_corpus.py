#!/usr/bin/env python3
"""The malformed-file corpus of ``tests/test_malformed.py`` through ``restore run``: counts, time, peak memory.

Generates the seeded corpus (good files, files that must fail, byte-flipped files that may do either; see
:func:`tests.test_malformed.make_corpus`) in a temporary folder and runs ``restore run`` on it with a
resize pipeline, in a process limited to 4 GiB of address space (``RLIMIT_AS``, inherited by the worker),
then reports what came out: done / failed, tracebacks, hangs (stall-limit kills), failures not named in one
line, and the peak resident memory of the largest process (``getrusage`` of the children).

Usage:  python benchmarks/fuzz_corpus.py
"""

from __future__ import annotations

import resource
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from restore.text import printable  # noqa: E402
from tests.test_malformed import make_corpus  # noqa: E402


def main() -> int:
    root = Path(tempfile.mkdtemp(prefix="restore-fuzz-"))
    try:
        good, bad, maybe = make_corpus(root / "in")
        (root / "p.yaml").write_text("version: 1\nname: fuzz\nsteps:\n  - resize: {scale: 0.5, filter: area}\n  - write: {path: '{name}.png'}\n")

        def limit():
            resource.setrlimit(resource.RLIMIT_AS, (4 << 30, 4 << 30))

        t0 = time.perf_counter()
        r = subprocess.run([sys.executable, "-m", "restore.cli", "run", str(root / "p.yaml"), str(root / "in"), "-o", str(root / "out"),
                            "--timeout", "30"], capture_output=True, preexec_fn=limit, timeout=1800)
        took = time.perf_counter() - t0
        peak = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024
        out = r.stdout.decode("utf-8", "replace")
        err = r.stderr.decode("utf-8", "replace")
        failed_lines = [x for x in out.splitlines() if x.startswith("  failed: ")]
        unnamed = [p for p in bad if not any(f"{printable(p)}: " in x for x in failed_lines)]
        summary = next((x for x in out.splitlines() if x.startswith("fuzz: ")), "(no summary)")
        print(f"corpus: {len(good) + len(bad) + len(maybe)} files ({len(good)} good, {len(bad)} malformed, {len(maybe)} byte-flipped)")
        print(f"restore run: exit {r.returncode}, {summary}, {took:.1f} s")
        print(f"tracebacks: {(out + err).count('Traceback')}; stall-limit kills: {out.count('timed out')}; "
              f"malformed files not named with a reason: {len(unnamed)}; lines on stderr: {len(err.splitlines())}")
        print(f"peak RSS of the largest process: {peak:.0f} MiB (address space limited to 4 GiB)")
    finally:
        shutil.rmtree(root, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
