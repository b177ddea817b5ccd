#!/usr/bin/env bash
# Set5 with DAT-light x2 and x4 through `restore run`: tiled (tile 64, overlap 16: every image is many tiles)
# versus whole-image inference, each scored with `restore eval` (PSNR-Y / SSIM, BasicSR conventions, crop = scale),
# plus the largest per-pixel difference between the tiled and whole-image outputs.
# Needs ../shared/data/sr/Set5.  Usage: bash benchmarks/set5_tiling.sh [OUT_DIR]
set -euo pipefail
cd "$(dirname "$0")/.."
SET5=${SET5:-../shared/data/sr/Set5}
OUT=${1:-/tmp/restore-set5}
mkdir -p "$OUT"
for s in 2 4; do
  for mode in whole tiled; do
    if [ $mode = whole ]; then tile=0; ov=0; else tile=${TILE:-64}; ov=${OVERLAP:-16}; fi
    cat > "$OUT/p-x$s-$mode.yaml" <<YAML
version: 1
name: set5-x$s-$mode
steps:
  - model: {name: dat-light-x$s, tile: $tile, overlap: $ov, precision: fp32}
  - write: {path: "{stem}_x$s.png"}
YAML
    /usr/bin/time -f "  x$s $mode: %e s wall, %M KB max RSS" restore run -q --overwrite "$OUT/p-x$s-$mode.yaml" "$SET5/LR_bicubic/X$s" -o "$OUT/x$s-$mode"
    restore eval "$OUT/x$s-$mode" "$SET5/HR" --crop-border $s | tail -1
  done
  python - "$OUT/x$s-whole" "$OUT/x$s-tiled" <<'PY'
import sys, numpy as np
from pathlib import Path
from restore.io import read
a, b = Path(sys.argv[1]), Path(sys.argv[2])
d = max(np.abs(read(p).pixels - read(b / p.name).pixels).max() for p in sorted(a.glob("*.png")))
print(f"  max |tiled - whole| over all pixels: {d * 255:.1f}/255")
PY
done
