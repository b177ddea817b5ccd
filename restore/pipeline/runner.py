"""Run a pipeline over files: collect inputs, read, stages, write; one bad file never stops the batch."""

from __future__ import annotations

import logging
import os
import time
from pathlib import Path
from typing import Any, Callable, Iterable

import numpy as np

from ..engine.loop import run_batch
from ..engine.plan import collect_inputs
from ..engine.results import FileResult, RunReport, failure_result
from ..errors import RestoreError
from ..image import SRGB, Encoding, Image, Metadata
from ..io import RawOptions, read
from .base import Context, Stage
from .build import build_stages
from .schema import PipelineSpec, parse_pipeline
from .steps.develop import DevelopStage
from .steps.write import WriteStage

__all__ = ["Pipeline", "FileResult", "RunReport", "collect_inputs", "load_pipeline", "failure_result"]

log = logging.getLogger("restore")


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
        if encoding is None and a.size and (float(np.nanmax(a)) > 1.001 or float(np.nanmin(a)) < -0.001):
            raise ValueError(
                f"float input with values outside [0, 1] (range {float(np.nanmin(a)):.4g} to {float(np.nanmax(a)):.4g}) and no "
                "encoding: float arrays are taken as sRGB in [0, 1]; pass encoding=restore.LINEAR_REC709 for linear "
                "scene-referred data (HDR), or scale the array to [0, 1]")
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
        """The pipeline's ``name``."""
        return self.spec.name

    @property
    def writes(self) -> list[WriteStage]:
        """The pipeline's write stages, in order."""
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
            frames = image if isinstance(image, list) else [image]
            if not s.accepts_cfa and any(getattr(f.encoding, "cfa", False) for f in frames):
                raise RestoreError(f"{s.kind} does not take a raw CFA mosaic (develop output: cfa); "
                                   "develop to RGB first, or write the mosaic to a .dng")
            if isinstance(image, list):
                image = s(image, ctx) if s.stack else [s(f, ctx) for f in image]
            elif s.stack:
                raise RestoreError(f"{s.kind} needs an exposure bracket (several frames), got one image")
            else:
                image = s(image, ctx)
            if ctx.stage_progress:
                ctx.stage_progress(s.kind)
        if isinstance(image, list):
            raise RestoreError("the pipeline ended with a bracket: add a merge or fuse step")
        return image

    def __call__(self, array, encoding: Encoding | None = None, device: str | None = None, exposure_times: list[float] | None = None) -> np.ndarray:
        """Process a numpy image (or a bracket of them) in memory (write steps are skipped).

        Args:
            array: ``(H, W)`` or ``(H, W, C)`` with C in 1, 3, 4; uint8, uint16
                or float32.  Integers are sRGB-encoded display values; float
                arrays are taken to be in ``encoding`` (default sRGB, [0, 1]:
                a float array with values outside [0, 1] and no ``encoding`` is
                refused, never clipped).
                For a grouped (HDR) pipeline: a list of such arrays, one per
                exposure, with ``exposure_times`` (seconds).
            encoding: Colour encoding of a float input: ``restore.LINEAR_REC709``
                for linear, scene-referred data (values may exceed 1; the
                result comes back linear too), ``restore.SRGB`` (the default).
            device: ``"cpu"``, ``"cuda"``, ... (default: the pipeline's).

        Returns:
            Array of the input's dtype and encoding, ``(H*s, W*s[, C])`` for
            a pipeline of total scale s.

        Raises:
            ValueError: unsupported shape or dtype, or float values outside
                [0, 1] without an ``encoding``.
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

    # -- per item ------------------------------------------------------------------
    def item_fields(self, members: list[Path], index: int, *, group: bool = False, rel_dir: str = "") -> dict:
        """Write-template fields of an item (one file, or a bracket's files in capture order).

        ``stem``, ``name``, ``suffix`` (the extension without its dot), ``parent``
        (the input's folder name), ``dir`` (its folder relative to the input
        folder given, ``.`` at the top), ``index``, ``pipeline``, ``group``
        (a bracket: ``<first stem>-<last stem>``; one file: its stem).
        """
        path = Path(members[0])
        fields = {"stem": path.stem, "name": path.name, "suffix": path.suffix.lstrip("."), "parent": path.parent.name,
                  "dir": rel_dir or ".", "index": index, "pipeline": self.name, "group": path.stem}
        if group and len(members) > 1:
            fields["group"] = f"{path.stem}-{Path(members[-1]).stem}"
        return fields

    def planned_outputs(self, members: list[Path], index: int, out_dir: Path, *, group: bool = False, rel_dir: str = "") -> list[Path]:
        """The files the write steps will produce for an item (the one place outputs are planned).

        Raises:
            OutputError: a template that leaves the output folder.
        """
        ctx = Context(out_dir=Path(out_dir), fields=self.item_fields(members, index, group=group, rel_dir=rel_dir))
        return [w.path_for(ctx) for w in self.writes]

    def run_item(
        self,
        members: list[Path],
        index: int,
        out_dir: Path,
        *,
        group: bool = False,
        rel_dir: str = "",
        times: dict[str, float] | None = None,
        overwrite: bool = False,
        device: str | None = None,
        tile_progress=None,
        stage_progress=None,
    ) -> FileResult:
        """Read an item (one file, or a bracket with ``group``), run the stages, write; never raises for bad input.

        Args:
            members: The file, or the bracket's files in capture order.
            index: Position in the batch (``{index}``).
            out_dir: Output folder.
            group: ``members`` is a bracket.
            rel_dir: The item's folder relative to the input folder (``{dir}``; outputs mirror it).
            times: Exposure times in seconds by file name, overriding the files' metadata (brackets).
            overwrite: Replace existing outputs (else an item whose outputs all exist is skipped).
            device: Torch device for model steps.
            tile_progress: Called with ``(done, total)`` tiles.
            stage_progress: Called with a short label after each file read and
                each stage (the worker's stall detector counts these as progress).

        Returns:
            The :class:`FileResult` (``failed`` with a one-line error naming the file for bad input).
        """
        members = [Path(m) for m in members]
        t0 = time.perf_counter()
        what = f"bracket {', '.join(p.name for p in members)}" if group else str(members[0])
        try:
            fields = self.item_fields(members, index, group=group, rel_dir=rel_dir)
            planned = self.planned_outputs(members, index, out_dir, group=group, rel_dir=rel_dir)
            if planned and not overwrite and all(p.exists() for p in planned):
                for m in members:
                    self._prefetched.pop(m, None)
                return FileResult(members[0], "skipped", planned, "outputs exist (use --overwrite)")
            frames = []
            for p in members:
                img = self._read(p)
                t = (times or {}).get(p.name)
                if t is not None:
                    img.meta.exposure_time_s = float(t)
                frames.append(img)
                if stage_progress:
                    stage_progress(f"read {p.name}")
            ctx = Context(out_dir=out_dir, fields=fields, overwrite=overwrite, tile_progress=tile_progress, device=device,
                          stage_progress=stage_progress)
            self.process(frames if group else frames[0], ctx)
            return FileResult(members[0], "done", ctx.outputs, seconds=time.perf_counter() - t0, notes=list(ctx.notes))
        except BaseException as e:  # noqa: BLE001 - every failure becomes a result; interrupts propagate
            r = failure_result(members[0], e, what=what, seconds=time.perf_counter() - t0)
            if r is None:
                raise
            return r

    # -- brackets ----------------------------------------------------------------
    def group_inputs(self, files: list[Path]) -> tuple[list[list[Path]], list[FileResult], dict[str, float]]:
        """Split input files into bracket groups (``input.group``): :meth:`probe_files` then :meth:`group_infos`.

        Returns:
            ``(groups, failures, times)``: each group a list of paths in capture
            order; each failure names the files and the problem; ``times`` the
            exposure-time table (by file name) that overrides the files'
            metadata (empty when the pipeline gives none).
        """
        infos, failures = self.probe_files(files)
        groups, more, times = self.group_infos(infos)
        return [[i.path for i in g] for g in groups], failures + more, times

    def probe_files(self, files: list[Path]) -> tuple[list, list[FileResult]]:
        """Headers of ``files`` (:func:`restore.hdr.group.probe`, pixels not decoded), read once.

        Returns:
            ``(infos, failures)``: a :class:`~restore.hdr.group.FrameInfo` per readable file, a failed
            result naming each unreadable one.
        """
        from ..hdr.group import probe

        infos, failures = [], []
        for f in files:
            try:
                infos.append(probe(f))
            except Exception as e:  # RestoreError, or a decoder library's own error on a corrupt header
                r = failure_result(Path(f), e)
                if r is None:
                    raise
                failures.append(r)
        return infos, failures

    def exposure_table(self, base_dir: Path | None = None) -> dict[str, float]:
        """The pipeline's ``input.exposure_times`` as ``{file name: seconds}`` (empty when none; read once).

        Raises:
            RestoreError: an unreadable or malformed table.
        """
        from ..hdr.group import load_exposure_times

        src = self.spec.input.exposure_times
        if src is None:
            return {}
        key = (str(src), str(base_dir))
        if getattr(self, "_table_key", None) != key:
            self._table = load_exposure_times(src, base_dir=base_dir)
            self._table_key = key
        return self._table

    def group_infos(self, infos: list) -> tuple[list[list], list[FileResult], dict[str, float]]:
        """Brackets from probed headers (no file is read again, except the pixels of frames without exposure
        times when only exposure fusion follows; :func:`restore.hdr.group.frame_look`).

        A bracket never spans folders: each folder's files are grouped on their own.

        Returns:
            ``(groups, failures, times)``: groups of :class:`~restore.hdr.group.FrameInfo` in capture order,
            failed results naming the files of each invalid group, the exposure-time table used.
        """
        from ..hdr.group import BracketError, group_brackets

        g = self.spec.input.group
        try:
            times = self.exposure_table(infos[0].path.parent if infos else None)
        except RestoreError as e:  # a bad table fails the whole batch, reported like a bad file
            where = infos[0].path.parent / str(self.spec.input.exposure_times) if infos else Path(str(self.spec.input.exposure_times))
            return [], [FileResult(where, "failed", error=str(e))], {}
        folders: dict[Path, list] = {}
        for info in infos:
            folders.setdefault(Path(os.path.abspath(info.path)).parent, []).append(info)
        groups, failures = [], []
        for members in folders.values():
            bad: list[BracketError] = []
            try:
                groups += group_brackets(members, by=g.by, size=g.size, time_gap_s=g.time_gap_s, exposure_times=times,
                                         errors=bad, need_times=self.needs_exposure_times, look=self._look)
            except BracketError as e:  # the folder cannot be split (e.g. a size remainder)
                failures.append(FileResult(e.files[0] if e.files else members[0].path, "failed", error=str(e)))
                continue
            failures += [FileResult(e.files[0] if e.files else Path("."), "failed", error=str(e)) for e in bad]
        return groups, failures, times

    def _look(self, path: Path):
        """What a frame without exposure time looks like (:func:`restore.hdr.group.frame_look`); None
        when it cannot be read (it then stays in the current bracket; its read fails it later, by name)."""
        from ..hdr.group import frame_look

        try:
            return frame_look(path, self.raw_options)
        except RestoreError:
            return None

    @property
    def needs_exposure_times(self) -> bool:
        """The pipeline merges radiance: every merge method (Debevec, Robertson, raw-linear, and the
        networks, which take exposure-normalised frames) needs each frame's exposure time; exposure
        fusion does not."""
        from .steps.merge import MergeStage

        return any(isinstance(s, MergeStage) for s in self.stages)

    def run(
        self,
        inputs: list[Path],
        out_dir: Path,
        *,
        roots: list[Path] | None = None,
        overwrite: bool = False,
        device: str | None = None,
        on_start: Callable[[Path, int], None] | None = None,
        on_result: Callable[[FileResult], None] | None = None,
        tile_progress: Callable[[int, int], None] | None = None,
        journal=None,
        timeout_s: float | None = None,
        retry_failed: bool = False,
        handle_signals: bool = False,
        executor="local",
        executor_options: dict | None = None,
    ) -> RunReport:
        """Process ``inputs`` into ``out_dir`` (see :func:`restore.engine.run_batch`).

        Args:
            inputs: Input files (e.g. from :func:`collect_inputs`).
            out_dir: Output folder.
            roots: The folders the inputs were collected from: outputs mirror
                each input's folder below its root (``card/101CANON/IMG_1.CR2``
                -> ``out/101CANON/...``).  None: every output goes to ``out_dir``
                itself.  Either way, two inputs planned onto one output are
                refused before anything runs.
            journal: A :class:`restore.journal.Journal`, ``True`` (the output
                folder's ``.restore-journal.sqlite``) or a journal path: skip
                what is done, retry what a crash interrupted, record every
                item.  None: no journal.
            timeout_s: Stall limit in seconds: the items run in a worker
                subprocess that is killed when it reports no progress (a
                finished tile, stage or file) for this long.  None: in this
                process, no limit.
            retry_failed: With a journal, retry items that failed before.
            handle_signals: Abandon the current item cleanly on SIGINT/SIGTERM
                (main thread only); the report then has ``interrupted`` set.
            executor: ``"local"`` (this machine) or ``"ray"`` (a Ray cluster;
                ``executor_options``: ``address``, ``workers``, ``gpus_per_worker``).

        Raises:
            RestoreError: the pipeline cannot be loaded, or two inputs would
                write the same output (before any item runs).
        """
        return run_batch(
            self, list(inputs), out_dir, roots=roots, journal=journal, timeout_s=timeout_s, overwrite=overwrite,
            retry_failed=retry_failed, device=device, on_start=on_start, on_result=on_result, tile_progress=tile_progress,
            handle_signals=handle_signals, executor=executor, executor_options=executor_options,
        )

    def factory(self):
        """A picklable callable that builds this pipeline again (in a worker process or on a Ray node)."""
        import functools

        return functools.partial(Pipeline, self.spec)


def load_pipeline(source: str | Path | dict[str, Any]) -> Pipeline:
    """Load and validate a pipeline and build its stages.

    Models are not loaded yet: :meth:`Pipeline.prepare` (or the first image) loads them.

    Args:
        source: A ``.yaml``/``.yml`` file path (``str`` or :class:`~pathlib.Path`), YAML text, or an
            already parsed mapping (see :mod:`restore.pipeline.schema` for the layout).

    Returns:
        The :class:`Pipeline`: callable on numpy arrays, runnable over files.

    Raises:
        PipelineError: an unreadable file, invalid YAML, or an invalid pipeline (unknown step, bad option,
            unknown model name ...): one line per problem, each naming the file, the line and the key.
    """
    return Pipeline(parse_pipeline(source))
