"""Run a pipeline over files: collect inputs, read, stages, write; one bad file never stops the batch."""

from __future__ import annotations

import fnmatch
import logging
import time
import traceback
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Iterable

import numpy as np

from ..errors import InputError, RestoreError
from ..image import SRGB, Encoding, Image, Metadata
from ..io import READ_SUFFIXES, TMP_MARK, RawOptions, read
from .schema import PipelineSpec, parse_pipeline
from .stages import Context, DevelopStage, Stage, WriteStage, build_stages

__all__ = ["Pipeline", "FileResult", "RunReport", "collect_inputs", "load_pipeline"]

log = logging.getLogger("restore")


@dataclass
class FileResult:
    """Outcome for one input: ``status`` is ``done``, ``skipped`` or ``failed``."""

    input: Path
    status: str
    outputs: list[Path] = field(default_factory=list)
    error: str | None = None
    seconds: float = 0.0


@dataclass
class RunReport:
    results: list[FileResult] = field(default_factory=list)

    def count(self, status: str) -> int:
        return sum(r.status == status for r in self.results)

    @property
    def failed(self) -> list[FileResult]:
        return [r for r in self.results if r.status == "failed"]

    @property
    def ok(self) -> bool:
        return not self.failed


def collect_inputs(paths: Iterable[str | Path], patterns: list[str] | None = None, recursive: bool = False, exclude: Path | None = None) -> list[Path]:
    """Expand files and folders into a sorted list of input files.

    Folders contribute files whose suffix a reader knows (and that match
    ``patterns`` when given, case-insensitively); hidden files and our
    temporary files are ignored, as is the ``exclude`` folder (the output
    folder when it lies inside an input folder).  Files named explicitly are
    kept as given, so a wrong one is reported rather than silently dropped.

    Raises:
        InputError: a path that does not exist.
    """
    out: list[Path] = []
    ex = exclude.resolve() if exclude else None
    for p in paths:
        p = Path(p)
        if p.is_dir():
            it = p.rglob("*") if recursive else p.iterdir()
            for f in sorted(it):
                if not f.is_file() or f.name.startswith(".") or TMP_MARK in f.name:
                    continue
                if ex and (ex == f.resolve().parent or ex in f.resolve().parents):
                    continue
                if f.suffix.lower() not in READ_SUFFIXES:
                    continue
                if patterns and not any(fnmatch.fnmatch(f.name.lower(), pat.lower()) for pat in patterns):
                    continue
                out.append(f)
        elif p.exists():
            out.append(p)
        else:
            raise InputError(p, "no such file or folder")
    seen, uniq = set(), []
    for f in out:
        k = f.resolve()
        if k not in seen:
            seen.add(k)
            uniq.append(f)
    return uniq


def _from_array(array: np.ndarray, encoding: Encoding | None) -> tuple[Image, np.dtype, bool]:
    a = np.asarray(array)
    squeeze = a.ndim == 2
    if squeeze:
        a = a[:, :, None]
    if a.ndim != 3 or a.shape[2] not in (1, 3, 4):
        raise ValueError(f"expected an (H, W), (H, W, 1|3|4) array, got shape {np.asarray(array).shape}")
    if a.dtype == np.uint8:
        px, depth = a.astype(np.float32) / 255.0, 8
    elif a.dtype == np.uint16:
        px, depth = a.astype(np.float32) / 65535.0, 16
    elif a.dtype in (np.float32, np.float64, np.float16):
        px, depth = a.astype(np.float32), 32
    else:
        raise ValueError(f"unsupported dtype {a.dtype}; use uint8, uint16 or float32")
    enc = encoding or SRGB
    return Image(np.ascontiguousarray(px), enc, Metadata(bit_depth=depth)), a.dtype, squeeze


def _to_array(image: Image, dtype: np.dtype, squeeze: bool, encoding: Encoding) -> np.ndarray:
    from ..color import convert

    out = convert(image, encoding).pixels if image.encoding != encoding else image.pixels
    if dtype == np.uint8:
        out = np.floor(np.clip(out, 0, 1) * 255 + 0.5).astype(np.uint8)
    elif dtype == np.uint16:
        out = np.floor(np.clip(out, 0, 1) * 65535 + 0.5).astype(np.uint16)
    else:
        out = out.astype(dtype)
    return out[:, :, 0] if squeeze and out.shape[2] == 1 else out


class Pipeline:
    """A loaded pipeline: callable on numpy arrays, runnable over files.

    Example:
        >>> p = restore.load_pipeline("pipelines/sr-x2.yaml")
        >>> big = p(photo_uint8)          # (H, W, 3) uint8 -> (2H, 2W, 3) uint8
    """

    def __init__(self, spec: PipelineSpec):
        self.spec = spec
        self.stages: list[Stage] = build_stages(spec)
        dev = next((s for s in self.stages if isinstance(s, DevelopStage)), None)
        self.raw_options = dev.raw_options if dev else RawOptions()

    @property
    def name(self) -> str:
        return self.spec.name

    @property
    def writes(self) -> list[WriteStage]:
        return [s for s in self.stages if isinstance(s, WriteStage)]

    def prepare(self) -> None:
        """Load every model now (so a bad model name fails once, before the batch).

        Raises:
            ModelError: a model cannot be found or loaded.
        """
        for s in self.stages:
            s.prepare()

    def process(self, image: Image, ctx: Context | None = None) -> Image:
        """Run all stages on an :class:`Image`; write steps write only when ``ctx.out_dir`` is set."""
        ctx = ctx or Context()
        for s in self.stages:
            image = s(image, ctx)
        return image

    def __call__(self, array: np.ndarray, encoding: Encoding | None = None, device: str | None = None) -> np.ndarray:
        """Process a numpy image in memory (write steps are skipped).

        Args:
            array: ``(H, W)`` or ``(H, W, C)`` with C in 1, 3, 4; uint8, uint16
                or float32.  Integers are sRGB-encoded display values; float
                arrays are taken to be in ``encoding`` (default sRGB, [0, 1]).
            encoding: Colour encoding of a float input (e.g.
                ``restore.image.LINEAR_REC709`` for linear data).
            device: ``"cpu"``, ``"cuda"``, ... (default: the pipeline's).

        Returns:
            Array of the input's dtype and encoding, ``(H*s, W*s[, C])`` for
            a pipeline of total scale s.

        Raises:
            ValueError: unsupported shape or dtype.
            RestoreError: a stage failed (e.g. a model cannot be loaded).
        """
        image, dtype, squeeze = _from_array(array, encoding)
        out = self.process(image, Context(device=device))
        return _to_array(out, dtype, squeeze, image.encoding)

    # -- batch ---------------------------------------------------------------
    def fields_for(self, path: Path, index: int) -> dict:
        return {"stem": path.stem, "name": path.name, "suffix": path.suffix, "parent": path.parent.name, "index": index, "pipeline": self.name, "group": path.stem}

    def planned_outputs(self, path: Path, index: int, out_dir: Path) -> list[Path]:
        ctx = Context(out_dir=out_dir, fields=self.fields_for(path, index))
        return [w.path_for(ctx) for w in self.writes]

    def run_file(self, path: Path, index: int, out_dir: Path, *, overwrite: bool = False, device: str | None = None, tile_progress=None) -> FileResult:
        """Process one input file; never raises for a bad file (the result says why)."""
        t0 = time.perf_counter()
        try:
            planned = self.planned_outputs(path, index, out_dir)
            if planned and not overwrite and all(p.exists() for p in planned):
                return FileResult(path, "skipped", planned, "outputs exist (use --overwrite)")
            image = read(path, self.raw_options)
            ctx = Context(out_dir=out_dir, fields=self.fields_for(path, index), overwrite=overwrite, tile_progress=tile_progress, device=device)
            self.process(image, ctx)
            return FileResult(path, "done", ctx.outputs, seconds=time.perf_counter() - t0)
        except RestoreError as e:
            msg = str(e)
            return FileResult(path, "failed", error=msg if str(path) in msg else f"{path}: {msg}", seconds=time.perf_counter() - t0)
        except MemoryError:
            return FileResult(path, "failed", error=f"{path}: out of memory", seconds=time.perf_counter() - t0)
        except Exception as e:  # a bug or an unexpected library error: report, keep going
            log.debug("%s", traceback.format_exc())
            first = str(e).splitlines()[0] if str(e) else ""
            return FileResult(path, "failed", error=f"{path}: {type(e).__name__}: {first}", seconds=time.perf_counter() - t0)

    def run(
        self,
        inputs: list[Path],
        out_dir: Path,
        *,
        overwrite: bool = False,
        device: str | None = None,
        on_start: Callable[[Path, int], None] | None = None,
        on_result: Callable[[FileResult], None] | None = None,
        tile_progress: Callable[[int, int], None] | None = None,
    ) -> RunReport:
        """Process ``inputs`` into ``out_dir``; see :meth:`run_file`."""
        out_dir = Path(out_dir)
        out_dir.mkdir(parents=True, exist_ok=True)
        self.prepare()
        report = RunReport()
        for i, path in enumerate(inputs):
            if on_start:
                on_start(path, i)
            r = self.run_file(path, i, out_dir, overwrite=overwrite, device=device, tile_progress=tile_progress)
            report.results.append(r)
            if on_result:
                on_result(r)
        return report


def load_pipeline(source: str | Path | dict) -> Pipeline:
    """Load a pipeline from a YAML path, YAML text or dict (see :mod:`restore.pipeline.schema`).

    Raises:
        PipelineError: invalid pipeline (message names file, line and key).
    """
    return Pipeline(parse_pipeline(source))
