"""spandrel's convolutional super-resolution networks: ESRGAN (RRDBNet, Real-ESRGAN, RealSR),
Compact (SRVGGNetCompact) and RealCUGAN.

spandrel detects, loads and runs them; this module declares what ``restore``
needs beyond spandrel's descriptor (:class:`~restore.models.archs.ArchInfo`):
the ``context`` (input pixels computed and cropped away around each tile) their
receptive fields need for tiled output to match whole-image output, wider than a
blend overlap should be (helper measurements: Real-ESRGAN x4plus needs ~64 px to
match within 1.4/255, SRVGGNetCompact 24 px, RealSR 48 px).  No attention
window (``window`` 1), the default 16 px blend overlap, no CPU bfloat16 verdict.
"""

from __future__ import annotations

from ._base import ArchInfo, Official, declare

__all__ = ["ESRGAN", "COMPACT", "REALCUGAN"]

_SPANDREL = Official(repo="https://github.com/chaiNNer-org/spandrel", checkpoints=("every official release spandrel supports",),
                     layout="as released")

ESRGAN = declare("ESRGAN", ArchInfo(task="super-resolution", overlap=16, context=64, official=_SPANDREL))
COMPACT = declare("Compact", ArchInfo(task="super-resolution", overlap=16, context=24, official=_SPANDREL))
REALCUGAN = declare("RealCUGAN", ArchInfo(task="super-resolution", overlap=16, context=64, official=_SPANDREL))
