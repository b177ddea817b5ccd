"""Generic code names no architecture: what an architecture needs lives in its descriptor
(``restore/models/archs/<module>.py``), never in the tiler, the pipeline, the readers or the CLI.

Every architecture id the descriptors declare (ours and spandrel's) and every architecture
module name is searched as a case-sensitive whole word.  No exclusions are needed today: the
only id that is an English word, ``Compact``, is capitalised and appears nowhere here.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from restore.models.archs import declared, modules

ROOT = Path(__file__).resolve().parents[1]
GENERIC = [ROOT / "restore" / "tiling.py", ROOT / "restore" / "cli.py",
           *sorted((ROOT / "restore" / "pipeline").rglob("*.py")), *sorted((ROOT / "restore" / "io").rglob("*.py"))]

#: Words that are also ordinary English (case-sensitive match, so only if written this way); none today.
EXCLUDED: frozenset[str] = frozenset()


def _names() -> list[str]:
    return sorted((set(declared()) | set(modules())) - EXCLUDED)


def test_the_names_cover_ours_and_spandrels():
    names = _names()
    assert {"DAT", "ESRGAN", "SwinIR", "Restormer", "RRFormer", "rrformer", "restormer"} <= set(names)


@pytest.mark.parametrize("path", GENERIC, ids=lambda p: str(p.relative_to(ROOT)))
def test_generic_module_names_no_architecture(path: Path):
    text = path.read_text()
    pattern = re.compile(r"(?<![A-Za-z0-9_])(" + "|".join(map(re.escape, _names())) + r")(?![A-Za-z0-9_])")
    hits = [f"{path.relative_to(ROOT)}:{text.count(chr(10), 0, m.start()) + 1}: {m.group(1)}"
            for m in pattern.finditer(text)]
    assert not hits, "architecture named outside its descriptor:\n" + "\n".join(hits)
