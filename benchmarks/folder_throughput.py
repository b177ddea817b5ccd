#!/usr/bin/env python3
"""A folder of 20 photos through ``restore run``: end-to-end throughput vs model-only throughput (issue 8).

Photos: the 10 BSD100 images, the 5 Set5 HR images and the 5 clean Rain200H /
RainDrop images in ``../shared/data`` (real photos, 0.03-0.35 Mpx), copied into
a temporary folder.  Model-only: in one process, each decoded image through
:func:`restore.tiling.run_tiled` with the pipeline's settings (model, tile,
overlap, the precision ``auto`` resolves to); the sum of those calls.
End-to-end: ``restore run <pipeline> <folder> -o <tmp>`` as a user runs it
(default journal and per-file worker process), wall time of the whole command
including interpreter start-up and model load.  Ratio = model-only time /
end-to-end time (1.0 = I/O and orchestration fully hidden).  Usage:

    python benchmarks/folder_throughput.py [--pipeline pipelines/sr-x2.yaml]
"""

from __future__ import annotations

import argparse
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from restore.io import read  # noqa: E402
from restore.pipeline import load_pipeline  # noqa: E402
from restore.pipeline.model_run import device_and_dtype  # noqa: E402
from restore.pipeline.stages import Context, ModelStage  # noqa: E402

DATA = ROOT.parent / "shared" / "data"


def photos() -> list[Path]:
    ps = sorted((DATA / "sr" / "BSD100_subset" / "HR").glob("*.png"))[:10]
    ps += sorted((DATA / "sr" / "Set5" / "HR").glob("*.png"))[:5]
    ps += sorted((DATA / "derain" / "Rain200H").rglob("clean/*.png"))[:3]
    ps += sorted((DATA / "weather" / "raindrop" / "clean").glob("*.png"))[:2]
    if len(ps) != 20:
        raise SystemExit(f"expected 20 photos under {DATA}, found {len(ps)}")
    return ps


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--pipeline", type=Path, default=ROOT / "pipelines" / "sr-x2.yaml")
    a = ap.parse_args()
    pipe = load_pipeline(a.pipeline)
    stage = next(s for s in pipe.stages if isinstance(s, ModelStage))
    o = stage.opts
    with tempfile.TemporaryDirectory() as d:
        folder = Path(d) / "photos"
        folder.mkdir()
        for i, p in enumerate(photos()):
            shutil.copy(p, folder / f"{i:02d}_{p.name}")
        files = sorted(folder.iterdir())
        mpx = sum(read(f).pixels.shape[0] * read(f).pixels.shape[1] for f in files) / 1e6

        stage.prepare()
        m = stage.model
        dtype = device_and_dtype(m, stage.run_options, Context(device="cpu"))[1]  # as the model step picks it
        model_s = 0.0
        for f in files:
            px = stage._encode(read(f))[0]
            t0 = time.perf_counter()
            stage._run(px, Context())  # exactly the model step's tiled call (tile, overlap, context, precision)
            model_s += time.perf_counter() - t0

        out = Path(d) / "out"
        t0 = time.perf_counter()
        r = subprocess.run([sys.executable, "-m", "restore.cli", "run", str(a.pipeline), str(folder), "-o", str(out), "-q"],
                           capture_output=True, text=True)
        e2e = time.perf_counter() - t0
        if r.returncode != 0:
            raise SystemExit(r.stdout + r.stderr)
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads; {len(files)} photos, {mpx:.2f} Mpx; "
          f"model {o.name}, tile {o.tile}/{o.overlap}, {str(dtype).replace('torch.', '')}")
    print(f"model only: {model_s:.1f} s ({mpx / model_s:.4f} Mpx/s); restore run end to end: {e2e:.1f} s "
          f"({mpx / e2e:.4f} Mpx/s); ratio {model_s / e2e:.3f}")


if __name__ == "__main__":
    main()
