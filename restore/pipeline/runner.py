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
    notes: list[str] = field(default_factory=list)


@dataclass
class RunReport:
    """Results of a batch; ``interrupted``: a signal stopped it before every item was reached."""

    results: list[FileResult] = field(default_factory=list)
    interrupted: bool = False

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
        self._prefetched: dict[Path, object] = {}
        self._last_ahead: list[Path] = []

    # -- read-ahead ------------------------------------------------------------
    def prefetch(self, paths: Iterable[Path]) -> None:
        """Start decoding ``paths`` (the next item's files) in a background thread.

        The batch loops call this before processing the current item, so the
        next file's decode (LibRaw, PNG/EXR decompression: C code that releases
        the GIL) overlaps this item's model compute; :meth:`run_file` and
        :meth:`run_group` then take the decoded image instead of reading again.
        A failed decode is raised there, exactly as a direct read would.
        Read-ahead results for paths other than these and the previous call's
        (the item about to be processed) are dropped: at most one item's
        decoded image is the extra memory.
        """
        want = [Path(p) for p in paths]
        keep = set(want) | set(self._last_ahead)
        for k in [k for k in self._prefetched if k not in keep]:
            self._prefetched.pop(k)
        self._last_ahead = want
        for p in want:
            if p not in self._prefetched:
                self._prefetched[p] = self._submit_read(p)

    def _submit_read(self, path: Path):
        """Decode ``path`` in a daemon thread (a decoder that never returns, e.g. on a FIFO,
        must not keep the process alive at exit, as an executor's joined worker would)."""
        import threading
        from concurrent.futures import Future

        fut: Future = Future()

        def work():
            if not fut.set_running_or_notify_cancel():
                return
            try:
                fut.set_result(read(path, self.raw_options))
            except BaseException as e:  # delivered to the item that takes it
                fut.set_exception(e)

        threading.Thread(target=work, name=f"restore-read {path.name}", daemon=True).start()
        return fut

    def _read(self, path: Path) -> Image:
        fut = self._prefetched.pop(Path(path), None)
        if fut is not None:
            return fut.result()
        return read(path, self.raw_options)

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

    def process(self, image: Image | list[Image], ctx: Context | None = None) -> Image:
        """Run all stages on an :class:`Image`, or on a bracket (``list[Image]``) for grouped pipelines.

        Per-image stages apply to every frame of a bracket until a merge or
        fuse step makes it one image.  Write steps write only when
        ``ctx.out_dir`` is set.

        Raises:
            RestoreError: a bracket given to a pipeline without merge/fuse, or
                a single image to a stack step.
        """
        ctx = ctx or Context()
        for s in self.stages:
            if isinstance(image, list):
                image = s(image, ctx) if s.stack else [s(f, ctx) for f in image]
            elif s.stack:
                raise RestoreError(f"{s.kind} needs an exposure bracket (several frames), got one image")
            else:
                image = s(image, ctx)
        if isinstance(image, list):
            raise RestoreError("the pipeline ended with a bracket: add a merge or fuse step")
        return image

    def __call__(self, array, encoding: Encoding | None = None, device: str | None = None, exposure_times: list[float] | None = None) -> np.ndarray:
        """Process a numpy image (or a bracket of them) in memory (write steps are skipped).

        Args:
            array: ``(H, W)`` or ``(H, W, C)`` with C in 1, 3, 4; uint8, uint16
                or float32.  Integers are sRGB-encoded display values; float
                arrays are taken to be in ``encoding`` (default sRGB, [0, 1]).
                For a grouped (HDR) pipeline: a list of such arrays, one per
                exposure, with ``exposure_times`` (seconds).
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
        if isinstance(array, (list, tuple)):
            if exposure_times is None or len(exposure_times) != len(array):
                raise ValueError("a bracket needs one exposure time (seconds) per frame")
            frames = []
            for a, t in zip(array, exposure_times):
                img, dtype, squeeze = _from_array(a, encoding)
                img.meta.exposure_time_s = float(t)
                frames.append(img)
            out = self.process(frames, Context(device=device))
            # merged radiance stays linear float; a fused/tone-mapped image returns in the input's type
            if out.encoding.transfer == "linear":
                return out.pixels.copy()
            return _to_array(out, dtype, squeeze, out.encoding)
        image, dtype, squeeze = _from_array(array, encoding)
        out = self.process(image, Context(device=device))
        if out.encoding.referred == "scene" and image.encoding.referred == "display":
            return out.pixels.copy()
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
                self._prefetched.pop(Path(path), None)
                return FileResult(path, "skipped", planned, "outputs exist (use --overwrite)")
            image = self._read(path)
            ctx = Context(out_dir=out_dir, fields=self.fields_for(path, index), overwrite=overwrite, tile_progress=tile_progress, device=device)
            self.process(image, ctx)
            return FileResult(path, "done", ctx.outputs, seconds=time.perf_counter() - t0, notes=list(ctx.notes))
        except RestoreError as e:
            msg = str(e)
            return FileResult(path, "failed", error=msg if str(path) in msg else f"{path}: {msg}", seconds=time.perf_counter() - t0)
        except MemoryError:
            return FileResult(path, "failed", error=f"{path}: out of memory", seconds=time.perf_counter() - t0)
        except Exception as e:  # a bug or an unexpected library error: report, keep going
            log.debug("%s", traceback.format_exc())
            first = str(e).splitlines()[0] if str(e) else ""
            return FileResult(path, "failed", error=f"{path}: {type(e).__name__}: {first}", seconds=time.perf_counter() - t0)

    # -- brackets ----------------------------------------------------------------
    def group_inputs(self, files: list[Path]) -> tuple[list[list[Path]], list[FileResult]]:
        """Split input files into bracket groups (``input.group``); invalid groups come back as failures.

        Returns:
            ``(groups, failures)``: each group a list of paths in capture order;
            each failure names the group's files and the problem.
        """
        from ..hdr.group import BracketError, group_brackets, load_exposure_times, probe

        g = self.spec.input.group
        times = None
        if self.spec.input.exposure_times is not None:
            base = files[0].parent if files else Path(".")
            try:
                times = load_exposure_times(self.spec.input.exposure_times, base_dir=base)
            except RestoreError as e:  # a bad table fails the whole batch, reported like a bad file
                return [], [FileResult(base / str(self.spec.input.exposure_times), "failed", error=str(e))]
        infos, failures = [], []
        for f in files:
            try:
                infos.append(probe(f))
            except RestoreError as e:
                failures.append(FileResult(f, "failed", error=str(e) if str(f) in str(e) else f"{f}: {e}"))
            except Exception as e:  # a decoder library's own error on a corrupt header
                failures.append(FileResult(f, "failed", error=f"{f}: unreadable ({type(e).__name__})"))
        bad: list[BracketError] = []
        try:
            groups = group_brackets(infos, by=g.by, size=g.size, time_gap_s=g.time_gap_s, exposure_times=times, errors=bad)
        except BracketError as e:  # the whole set cannot be split (e.g. a size remainder)
            return [], failures + [FileResult(infos[0].path if infos else Path("."), "failed", error=str(e))]
        failures += [FileResult(e.files[0] if e.files else Path("."), "failed", error=str(e)) for e in bad]
        self._times = times or {}
        return [[i.path for i in grp] for grp in groups], failures

    def group_fields(self, group: list[Path], index: int) -> dict:
        f = self.fields_for(group[0], index)
        f["group"] = f"{group[0].stem}-{group[-1].stem}" if len(group) > 1 else group[0].stem
        return f

    def run_group(self, group: list[Path], index: int, out_dir: Path, *, overwrite: bool = False, device: str | None = None, tile_progress=None) -> FileResult:
        """Read a bracket, run the stages, write; never raises for bad input (the result says why)."""
        t0 = time.perf_counter()
        names = ", ".join(p.name for p in group)
        try:
            fields = self.group_fields(group, index)
            planned = [w.path_for(Context(out_dir=out_dir, fields=fields)) for w in self.writes]
            if planned and not overwrite and all(p.exists() for p in planned):
                return FileResult(group[0], "skipped", planned, "outputs exist (use --overwrite)")
            frames = []
            for p in group:
                img = self._read(p)
                t = getattr(self, "_times", {}).get(p.name)
                if t is not None:
                    img.meta.exposure_time_s = float(t)
                frames.append(img)
            ctx = Context(out_dir=out_dir, fields=fields, overwrite=overwrite, tile_progress=tile_progress, device=device)
            self.process(frames, ctx)
            r = FileResult(group[0], "done", ctx.outputs, seconds=time.perf_counter() - t0)
            r.notes = ctx.notes
            return r
        except RestoreError as e:
            return FileResult(group[0], "failed", error=f"bracket {names}: {e}", seconds=time.perf_counter() - t0)
        except MemoryError:
            return FileResult(group[0], "failed", error=f"bracket {names}: out of memory", seconds=time.perf_counter() - t0)
        except Exception as e:
            log.debug("%s", traceback.format_exc())
            first = str(e).splitlines()[0] if str(e) else ""
            return FileResult(group[0], "failed", error=f"bracket {names}: {type(e).__name__}: {first}", seconds=time.perf_counter() - t0)

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
        journal=None,
        timeout_s: float | None = None,
        retry_failed: bool = False,
        handle_signals: bool = False,
    ) -> RunReport:
        """Process ``inputs`` into ``out_dir``; see :meth:`run_file`.

        Args:
            journal: A :class:`restore.journal.Journal`, ``True`` (the output
                folder's ``.restore-journal.sqlite``) or a journal path: skip
                what is done, retry what a crash interrupted, record every
                item (see :mod:`restore.batch`).  None: no journal.
            timeout_s: Per-item time limit in seconds; the items then run in a
                worker subprocess that is killed and restarted when one
                exceeds it (the item fails with ``timed out after N s``).
                None: in this process, no limit.
            retry_failed: With a journal, retry items that failed before.
            handle_signals: Abandon the current item cleanly on SIGINT/SIGTERM
                (main thread only); the report then has ``interrupted`` set.
        """
        if journal is not None or timeout_s or handle_signals:
            from ..batch import run_batch

            return run_batch(
                self, list(inputs), out_dir, journal=journal, timeout_s=timeout_s, overwrite=overwrite, retry_failed=retry_failed,
                device=device, on_start=on_start, on_result=on_result, tile_progress=tile_progress, handle_signals=handle_signals,
            )
        out_dir = Path(out_dir)
        out_dir.mkdir(parents=True, exist_ok=True)
        self.prepare()
        report = RunReport()
        if self.spec.input.group is not None:
            groups, failures = self.group_inputs(list(inputs))
            for r in failures:
                report.results.append(r)
                if on_result:
                    on_result(r)
            for i, grp in enumerate(groups):
                if on_start:
                    on_start(grp[0], i)
                if i + 1 < len(groups):
                    self.prefetch(groups[i + 1])
                r = self.run_group(grp, i, out_dir, overwrite=overwrite, device=device, tile_progress=tile_progress)
                report.results.append(r)
                if on_result:
                    on_result(r)
            return report
        for i, path in enumerate(inputs):
            if on_start:
                on_start(path, i)
            if i + 1 < len(inputs):
                self.prefetch([inputs[i + 1]])
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
