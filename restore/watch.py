"""``restore watch``: process every capture dropped into a folder exactly once.

A :class:`Watcher` watches an input folder with ``watchdog`` (inotify,
FSEvents, ...), scans it at start and again every ``rescan_s`` seconds as a
safety net for missed events, and runs the pipeline on each new file:

* **Stable files only.**  A file is taken once its size and mtime have not
  changed for ``settle_s`` seconds *and* it decodes (in the worker process,
  under the time limit).  A file that fails to decode is looked at again:
  if it changed meanwhile it was still being written (no attempt counted);
  if it stayed unchanged through ``bad_strikes`` checks one settle time
  apart, it is a bad file and fails with the decoder's reason.
* **Exactly once.**  Paths are tracked in one table, so a file seen by the
  initial scan, by events and by a rescan is queued once; the journal
  (:mod:`restore.journal`, in the output folder) carries this across restarts
  (done files are skipped, an item interrupted by a crash is retried).
* **Failures** are retried up to ``retries`` attempts with exponential backoff
  (``backoff_s``, x2 each time); then the input is failed for good, and with
  ``failed_dir`` moved there with a line in ``failed_dir/errors.log``.
* ``move_done`` moves inputs away after success.
* **Brackets** (pipelines with ``input.group``): decoded files wait in a pool
  until their group is complete by the grouping rule (a later file starts the
  next group, or ``size`` frames arrived) or no file joined for
  ``group_timeout_s``; then the group is merged.
* **Per-file time limit** (``timeout_s``): items run in a worker process that
  is killed and restarted when one exceeds it.
* **SIGINT/SIGTERM** (``handle_signals``): the current item is abandoned
  cleanly (temporary files removed, journal row back to pending) and the
  daemon exits with a summary.
* A status line (rich, on a terminal) and a log file
  (``<out_dir>/restore-watch.log``).
"""

from __future__ import annotations

import logging
import os
import queue
import re
import shutil
import sqlite3
import time
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Callable

from .engine import FileResult, Item, SignalGuard, failure_result, is_input_file, make_executor, output_owner_conflict, relative_dir
from .engine.executors import UNREADABLE
from .errors import InputError, RestoreError
from .io.paths import not_regular
from .journal import Entry, Journal, JournalError, remove_temp_files
from .text import printable
from .pipeline.runner import Pipeline

__all__ = ["Watcher", "WatchOptions", "WatchReport", "LOG_NAME"]

#: Log file of the daemon, in the output folder.
LOG_NAME = "restore-watch.log"
#: Error log in the ``failed_dir``: one tab-separated line per failed input (time, file, error).
ERROR_LOG_NAME = "errors.log"


@dataclass
class WatchOptions:
    """Settings of :class:`Watcher` (times in seconds).

    Attributes:
        settle_s: A file must keep its size and mtime this long before it is taken.
        rescan_s: Full rescan interval (safety net for missed events).
        move_done: Move inputs here after success (None: leave them).
        failed_dir: Move inputs that failed for good here, with ``errors.log``.
        retries: Attempts per input (processing failures, timeouts, crashes).
        timeout_s: Time limit per item; None/0: no limit, run in this process.
        backoff_s: Wait before the first retry; doubles with each attempt.
        group_timeout_s: Brackets: merge an incomplete group after no file
            joined it for this long.
        bad_strikes: Checks (one settle time apart) an unchanged file must
            fail to decode before it counts as bad rather than still being written.
        once: Process what is there (and what arrives meanwhile) and return
            when nothing is left.
        recursive: Watch sub-folders too (default: the pipeline's ``input.recursive``).
        device: Torch device for model steps.
        overwrite: Redo inputs whose outputs exist.
        poll_s: Main loop tick.
        executor: ``local`` or ``ray`` (see :func:`restore.engine.make_executor`).
        executor_options: Ray: ``address``, ``workers``, ``gpus_per_worker``.
    """

    settle_s: float = 2.0
    rescan_s: float = 30.0
    move_done: Path | None = None
    failed_dir: Path | None = None
    retries: int = 3
    timeout_s: float | None = 600.0
    backoff_s: float = 2.0
    group_timeout_s: float = 30.0
    bad_strikes: int = 2
    once: bool = False
    recursive: bool | None = None
    device: str | None = None
    overwrite: bool = False
    poll_s: float = 0.2
    executor: str = "local"
    executor_options: dict = field(default_factory=dict)


@dataclass
class WatchReport:
    """What a watch session did: ``done`` and ``failed`` results (failed = for good), ``interrupted`` by a signal."""

    done: list[FileResult] = field(default_factory=list)
    failed: list[FileResult] = field(default_factory=list)
    skipped: int = 0
    interrupted: bool = False


@dataclass
class _Track:
    path: Path
    size: int
    mtime_ns: int
    since: float  # monotonic time of the last change seen
    strikes: int = 0
    not_before: float = 0.0
    pooled: bool = False  # brackets: decoded, waiting for its group
    running: bool = False  # submitted to the executor, result not handled yet
    info: "object" = None  # brackets: the header (FrameInfo), read once when pooled


def _natural_key(name: str):
    return [int(t) if t.isdigit() else t.lower() for t in re.split(r"(\d+)", name)]


def _unique(dest_dir: Path, name: str) -> Path:
    d = dest_dir / name
    n = 1
    while d.exists():
        p = Path(name)
        d = dest_dir / f"{p.stem}-{n}{p.suffix}"
        n += 1
    return d


class _Stop(Exception):
    pass


# -- the daemon's decisions, as pure functions (unit-tested without files, clocks or processes) ---------------


def settled(since: float, not_before: float, now: float, settle_s: float) -> bool:
    """A file whose size and mtime last changed at ``since`` is taken at ``now`` once they held for
    ``settle_s`` seconds and no retry backoff (``not_before``) is pending (monotonic seconds)."""
    return now - since >= settle_s and now >= not_before


def capture_order(infos: list) -> list:
    """Frames in capture order: by capture time when every frame has one (ties by name), else by file name
    in natural order (``IMG_9`` before ``IMG_10``)."""
    if infos and all(i.capture_time is not None for i in infos):
        return sorted(infos, key=lambda i: (i.capture_time, _natural_key(i.path.name), str(i.path)))
    return sorted(infos, key=lambda i: (_natural_key(i.path.name), str(i.path)))


def complete_brackets(order: list, group_fn, by: str, size: int | None, flush: bool) -> tuple[list[list], list[tuple[list, str]]]:
    """The brackets among pooled frames that are complete by the grouping rule, per folder.

    Args:
        order: Pooled frames (:class:`~restore.hdr.group.FrameInfo`) in capture order.
        group_fn: ``infos -> (groups, failures)`` (:meth:`restore.pipeline.Pipeline.group_infos`).
        by, size: The pipeline's grouping rule.
        flush: No more frames are coming (the group timeout passed, or ``--once`` ran out of files): every
            frame must go now, into a bracket or failed.

    Returns:
        ``(groups, failed)``: complete brackets; and ``(frames, reason)`` for frames that can never form a
        valid bracket (a ``size`` chunk that does not validate; left over at a flush).  Frames in neither
        wait for more to arrive (the last, still growing bracket of an exposure sequence).
    """
    folders: dict[Path, list] = {}
    for i in order:
        folders.setdefault(i.path.parent, []).append(i)
    groups: list[list] = []
    failed: list[tuple[list, str]] = []
    for frames in folders.values():
        if flush:
            found, failures = group_fn(frames)
            grouped = {i.path for grp in found for i in grp}  # (groups hold copies carrying table exposure times)
            rest = [i for i in frames if i.path not in grouped]
            groups += found
            if rest:
                failed.append((rest, "; ".join(f.error for f in failures if f.error) or "not part of a valid bracket"))
            continue
        if by == "size":
            n = int(size)
            for k in range(0, len(frames) - len(frames) % n, n):
                chunk = frames[k : k + n]
                found, failures = group_fn(chunk)
                if failures:
                    failed.append((chunk, "; ".join(f.error for f in failures if f.error) or "not a valid bracket"))
                else:
                    groups += found
            continue
        found, failures = group_fn(frames)
        if not failures:
            groups += found[:-1]  # the last group may still grow
            continue
        for k in range(1, len(frames) - 1):
            found, failures = group_fn(frames[:-k])
            if not failures:
                groups += found  # the trailing frames start the next (still incomplete) group
                break
    return groups, failed


class Watcher:
    """Watch ``in_dir`` and run ``pipeline`` on every stable new file, writing into ``out_dir``.

    Args:
        pipeline: A loaded :class:`~restore.pipeline.Pipeline`.
        in_dir: The folder to watch.
        out_dir: Output folder (also holds the journal and the log).
        options: :class:`WatchOptions`.
        console: A ``rich`` console for the status line and messages (None: quiet).
        on_result: Called with each final :class:`FileResult` (done or failed for good).
        handle_signals: Stop cleanly on SIGINT/SIGTERM (main thread only).

    Raises:
        InputError: ``in_dir`` is not a folder, or is the output folder.
    """

    def __init__(
        self,
        pipeline: Pipeline,
        in_dir: str | Path,
        out_dir: str | Path,
        options: WatchOptions | None = None,
        *,
        console=None,
        on_result: Callable[[FileResult], None] | None = None,
        handle_signals: bool = False,
    ):
        self.pipe = pipeline
        self.opts = options or WatchOptions()
        self.in_dir = Path(in_dir)
        self.out_dir = Path(out_dir)
        if not self.in_dir.is_dir():
            raise InputError(self.in_dir, "not a folder")
        if self.in_dir.resolve() == self.out_dir.resolve():
            raise InputError(self.out_dir, "the output folder cannot be the watched folder (outputs would be taken as inputs)")
        for d, what in ((self.opts.move_done, "--move-done"), (self.opts.failed_dir, "--failed")):
            if d is not None and Path(d).resolve() == self.in_dir.resolve():
                raise InputError(d, f"{what} folder cannot be the watched folder")
        self.console = console
        self.on_result = on_result
        self.handle_signals = handle_signals
        self.recursive = self.opts.recursive if self.opts.recursive is not None else self.pipe.spec.input.recursive
        self.grouped = self.pipe.spec.input.group is not None
        self.report = WatchReport()
        self._tracks: dict[str, _Track] = {}
        self._members: dict[str, Entry] = {}
        self._final: dict[str, tuple[int, int]] = {}
        self._events: queue.SimpleQueue = queue.SimpleQueue()
        self._index = 0
        self._group_times: dict[str, float] = {}
        self._owners: dict[str, str] = {}
        self._in_flight: dict[int, tuple[Item, list[_Track]]] = {}
        self._odd: set[str] = set()
        self._last_pool_add = 0.0
        self._stop = False
        self._current = ""
        self.log = logging.getLogger("restore.watch")

    # -- public -------------------------------------------------------------------------------
    def stop(self) -> None:
        """Ask the loop to stop after the current step (thread-safe)."""
        self._stop = True

    def run(self) -> WatchReport:
        """Watch until stopped (or, with ``once``, until nothing is left); return the report.

        Raises:
            RestoreError: the pipeline cannot be loaded (unknown model ...).
            JournalError: another daemon or batch works on the output folder,
                or the journal cannot be written.
        """
        self.out_dir.mkdir(parents=True, exist_ok=True)
        for d in (self.opts.move_done, self.opts.failed_dir):
            if d is not None:
                Path(d).mkdir(parents=True, exist_ok=True)
        self.journal = Journal.for_output(self.out_dir)  # first: refuses a second daemon on the same folder
        handler = logging.FileHandler(self.out_dir / LOG_NAME, encoding="utf-8")
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(message)s"))
        self.log.addHandler(handler)
        self.log.setLevel(logging.INFO)
        propagate = self.log.propagate
        self.log.propagate = False  # the console gets its own lines; the file gets everything
        self.runner = make_executor(self.pipe, self.opts.timeout_s, self.opts.device, kind=self.opts.executor,
                                    out_dir=self.out_dir, **self.opts.executor_options)
        try:
            self.runner.start()
        except BaseException:
            self.journal.close()
            self.log.removeHandler(handler)
            self.log.propagate = propagate
            handler.close()
            raise
        observer = None
        status = None
        try:
            if not self.opts.overwrite:  # with overwrite, what earlier sessions did is redone once
                self._members = {k: e for k, e in self.journal.member_index().items() if e.state == "done"}
            self._owners = self.journal.output_owners()
            self._excluded = [p.resolve() for p in (self.out_dir, self.opts.move_done, self.opts.failed_dir) if p is not None]
            observer = self._start_observer()
            self._say("info", f"watching {self.in_dir} -> {self.out_dir} (pipeline {self.pipe.name}; settle {self.opts.settle_s:g} s)")
            self._scan()
            next_rescan = time.monotonic() + self.opts.rescan_s
            if self.console is not None and self.console.is_terminal:
                status = self.console.status(self._status_text())
                status.start()
            with SignalGuard(self.handle_signals) as guard:
                self.guard = guard
                while not (guard.stop or self._stop):
                    self._drain()
                    now = time.monotonic()
                    if now >= next_rescan:
                        self._scan()
                        next_rescan = now + self.opts.rescan_s
                    self._update(now)
                    try:
                        worked = self._step(now)
                    except _Stop:
                        break
                    if status is not None:
                        status.update(self._status_text())
                    if self.opts.once and not self._tracks:
                        break
                    if not worked:
                        try:
                            p = self._events.get(timeout=self.opts.poll_s)
                            self._see(Path(p))
                        except queue.Empty:
                            pass
                self.report.interrupted = self.report.interrupted or guard.stop
                if self._in_flight:  # stopped with items running: they stay to do (rows back to pending)
                    for item in self.runner.cancel():
                        remove_temp_files(item.outputs)
                        self.journal.abandon(item.key)
                    self._in_flight.clear()
        except sqlite3.Error as e:
            raise JournalError(f"{self.journal.path}: journal error ({e}); the daemon stopped (start it again to continue)") from None
        finally:
            if status is not None:
                status.stop()
            if observer is not None:
                quiet = logging.getLogger("watchdog")
                level = quiet.level
                quiet.setLevel(logging.CRITICAL)  # events racing the shutdown are expected, not errors
                try:
                    observer.stop()
                    observer.join(5)
                finally:
                    quiet.setLevel(level)
            self.runner.close()
            self.journal.close()
            r = self.report
            self._say("info", f"stopped{' (signal)' if r.interrupted else ''}: {len(r.done)} done, {len(r.failed)} failed, {r.skipped} skipped")
            self.log.removeHandler(handler)
            self.log.propagate = propagate
            handler.close()
        return self.report

    # -- discovery -------------------------------------------------------------------------------
    def _start_observer(self):
        try:
            from watchdog.events import FileSystemEventHandler
            from watchdog.observers import Observer
        except ImportError:  # pragma: no cover - watchdog is a dependency
            self._say("warning", "watchdog is not installed: relying on rescans")
            self.opts.rescan_s = min(self.opts.rescan_s, 2.0)
            return None
        events = self._events

        class _Handler(FileSystemEventHandler):
            def on_any_event(self, event):
                # reading a file (our own hash or decode) raises opened / closed-without-write events: they
                # say nothing new, and queueing them made a touched file loop forever
                if event.is_directory or event.event_type in ("opened", "closed_no_write"):
                    return
                for attr in ("dest_path", "src_path"):
                    p = getattr(event, attr, None)
                    if p:
                        events.put(os.fsdecode(p))

        obs = Observer()
        try:
            obs.schedule(_Handler(), str(self.in_dir), recursive=bool(self.recursive))
            obs.start()
        except Exception as e:  # e.g. inotify watch limit reached
            self._say("warning", f"cannot watch {self.in_dir} for events ({e}); relying on rescans every 2 s")
            self.opts.rescan_s = min(self.opts.rescan_s, 2.0)
            return None
        return obs

    def _scan(self) -> None:
        it = self.in_dir.rglob("*") if self.recursive else self.in_dir.iterdir()
        try:
            for p in sorted(it):
                self._see(p)
        except OSError as e:
            self._say("warning", f"cannot scan {self.in_dir}: {e}")

    def _drain(self) -> None:
        while True:
            try:
                p = self._events.get_nowait()
            except queue.Empty:
                return
            self._see(Path(p))

    def _eligible(self, p: Path, regular_only: bool = True) -> bool:
        """The discovery filter of ``restore run`` (:func:`restore.engine.is_input_file`), plus: without
        recursion only the watched folder itself (a symlink in it counts as in it, wherever it points)."""
        if not self.recursive and Path(os.path.abspath(p)).parent != Path(os.path.abspath(self.in_dir)):
            return False
        return is_input_file(p, self.pipe.spec.input.patterns, self._excluded, regular_only=regular_only)

    def _see(self, p: Path) -> None:
        """Start tracking a path unless it is tracked already, not ours, or done with the same content."""
        try:
            key = str(p.resolve())
        except OSError:
            return
        if key in self._tracks:
            return
        if not self._eligible(p):
            if key not in self._odd and not p.is_dir() and self._eligible(p, regular_only=False):
                self._odd.add(key)  # a FIFO, device or broken link with an image name: said once
                self.report.skipped += 1
                self._say("warning", f"skipped {p}: {not_regular(p) or 'not a regular file'}")
            return
        try:
            st = p.stat()
        except OSError:
            return
        fp = (st.st_size, st.st_mtime_ns)
        e = self._members.get(key)
        if e is not None:
            m = next((m for m in e.members if m.path == key), None)
            if m is not None and (m.size, m.mtime_ns) == fp and all(Path(o).exists() for o in e.outputs):
                if self.opts.move_done is not None:  # done, but the move was interrupted (crash): finish it
                    self._move(p, Path(self.opts.move_done))
                return
        if self._final.get(key) == fp:
            return
        self._tracks[key] = _Track(Path(key), st.st_size, st.st_mtime_ns, time.monotonic())
        if not self.grouped:
            try:
                self.journal.mark_pending([Path(key)])
            except OSError:
                pass

    def _update(self, now: float) -> None:
        for key, t in list(self._tracks.items()):
            try:
                st = t.path.stat()
            except OSError:
                del self._tracks[key]  # moved or deleted before we took it
                continue
            if (st.st_size, st.st_mtime_ns) != (t.size, t.mtime_ns):
                t.size, t.mtime_ns, t.since, t.strikes, t.pooled, t.info = st.st_size, st.st_mtime_ns, now, 0, False, None

    def _stable(self, t: _Track, now: float) -> bool:
        return settled(t.since, t.not_before, now, self.opts.settle_s)

    def _changed(self, t: _Track) -> bool:
        try:
            st = t.path.stat()
        except OSError:
            return True
        return (st.st_size, st.st_mtime_ns) != (t.size, t.mtime_ns)

    # -- work --------------------------------------------------------------------------------------
    def _step(self, now: float) -> bool:
        """Do at most one unit of work (submit an item, or handle finished ones); True if something was done."""
        ready = sorted((t for t in self._tracks.values() if not t.pooled and not t.running and self._stable(t, now)),
                       key=lambda t: _natural_key(str(t.path)))
        if ready and (self.grouped or self.runner.in_flight < self.runner.capacity):
            t = ready[0]
            try:
                if self.grouped:
                    self._probe_for_pool(t)
                else:
                    self._process_single(t)
            except (_Stop, KeyboardInterrupt):
                raise
            except Exception as e:  # a bug must not kill the daemon nor loop on the same file
                self.log.exception("internal error on %s", t.path)
                self._internal_error([t], e)
            return True
        if self._in_flight:
            return self._collect()
        if self.grouped and any(t.pooled for t in self._tracks.values()):
            try:
                return self._groups(now)
            except (_Stop, KeyboardInterrupt):
                raise
            except Exception as e:
                self.log.exception("internal error while forming brackets")
                self._internal_error([t for t in self._tracks.values() if t.pooled], e)
                return True
        return False

    def _internal_error(self, tracks: list[_Track], e: Exception) -> None:
        first = str(e).splitlines()[0] if str(e) else ""
        members = [t.path for t in tracks]
        if not members:
            return
        try:
            e_row = self.journal.get(members[0])
            if e_row is not None and e_row.state == "running":
                self.journal.fail(members[0], f"internal error: {type(e).__name__}: {first}")
        except Exception:
            pass
        self._fail_for_good(members, tracks, f"{members[0]}: internal error: {type(e).__name__}: {first} (see {LOG_NAME})")

    def _item(self, members: list[Path], group: bool = False, times: dict | None = None) -> Item | None:
        """The item for these files (outputs mirrored below the watched folder); None, with the file
        failed, when its output template leaves the output folder."""
        rel = relative_dir(members[0], [self.in_dir])
        try:
            outs = self.pipe.planned_outputs(members, self._index, self.out_dir, group=group, rel_dir=rel)
        except RestoreError as e:
            self._fail_for_good(members, [self._tracks[str(m)] for m in members if str(m) in self._tracks], f"{members[0]}: {e}")
            return None
        return Item(self._index, list(members), group, rel, outs, dict(times or {}) if group else {})

    def _run(self, item: Item, *, probe: bool = False, probe_only: bool = False, overwrite: bool = False, key: Path | None = None) -> FileResult:
        self._current = item.key.name
        try:
            with self.guard.interruptible():
                return self.runner.run(item, out_dir=self.out_dir, overwrite=overwrite, probe=probe, probe_only=probe_only)
        except KeyboardInterrupt:
            remove_temp_files(item.outputs)
            if key is not None:
                self.journal.abandon(key)
            self.report.interrupted = True
            self._say("info", f"interrupted: abandoned {item.key.name} (it stays to do)")
            raise _Stop from None
        finally:
            self._current = ""

    def _process_single(self, t: _Track) -> None:
        """Plan and submit one file; its result is handled by :meth:`_collect` (several may run at once on Ray)."""
        p = t.path
        item = self._item([p])
        if item is None:
            return
        plan = self._plan(item)
        if plan is None:
            return
        if not self._begin([p], [t]):
            return
        self.runner.submit(item, out_dir=self.out_dir, probe=True, overwrite=self.opts.overwrite or plan.changed)
        t.running = True
        self._in_flight[id(item)] = (item, [t])
        self._current = p.name
        self._index += 1

    def _collect(self) -> bool:
        """Handle finished items (waiting up to one poll tick); a signal abandons everything in flight."""
        try:
            with self.guard.interruptible():
                done = self.runner.wait(self.opts.poll_s)
        except KeyboardInterrupt:
            for item in self.runner.cancel():
                remove_temp_files(item.outputs)
                self.journal.abandon(item.key)
                self._say("info", f"interrupted: abandoned {item.key.name} (it stays to do)")
            self._in_flight.clear()
            self.report.interrupted = True
            raise _Stop from None
        for item, r in done:
            _, tracks = self._in_flight.pop(id(item), (item, []))
            for t in tracks:
                t.running = False
            try:
                self._handle(r, list(item.members), tracks)
            except Exception as e:  # a bug must not kill the daemon nor loop on the same file
                self.log.exception("internal error on %s", item.key)
                self._internal_error(tracks, e)
        if not self._in_flight:
            self._current = ""
        return bool(done)

    def _plan(self, item: Item):
        """Journal decision; handles skip/wait/failed itself and returns None then, else the plan."""
        members, planned = item.members, item.outputs
        tracks = [self._tracks[str(m)] for m in members if str(m) in self._tracks]
        clash = output_owner_conflict(item, self._owners)
        if clash is not None:
            self._fail_for_good(members, tracks, clash)
            return None
        if self.opts.overwrite:
            from .journal import Plan

            return Plan("process", "overwrite")
        plan = self.journal.plan(members, planned, max_attempts=self.opts.retries)
        if plan.action == "skip":
            self.report.skipped += 1
            self._remember_done(members, plan.entry)
            self._say("info", f"skipped {', '.join(m.name for m in members)}: {plan.reason}")
            for t in tracks:
                self._tracks.pop(str(t.path), None)
            return None
        if plan.action == "wait":
            delay = max(0.0, (plan.entry.next_try or 0) - time.time())
            for t in tracks:
                t.not_before = time.monotonic() + delay
            return None
        if plan.action == "failed":
            self._fail_for_good(members, tracks, plan.entry.error if plan.entry and plan.entry.error else plan.reason)
            return None
        if plan.entry is not None and plan.entry.state == "running":
            remove_temp_files(planned)  # left by an interrupted attempt
        return plan

    def _begin(self, members: list[Path], tracks: list[_Track]) -> bool:
        try:
            self.journal.begin(members)
            return True
        except OSError:
            for t in tracks:  # vanished between the check and now
                self._tracks.pop(str(t.path), None)
            return False

    def _handle(self, r: FileResult, members: list[Path], tracks: list[_Track]) -> None:
        key = members[0]
        now = time.monotonic()
        if r.status in ("done", "skipped"):
            self.journal.finish(key, r.outputs)
            for o in r.outputs:
                self._owners[os.path.abspath(o)] = str(Path(os.path.abspath(key)).resolve())
            self._remember_done(members, self.journal.get(key))
            for t in tracks:
                self._tracks.pop(str(t.path), None)
            if self.opts.move_done is not None:
                for m in members:
                    self._move(m, Path(self.opts.move_done))
            outs = ", ".join(str(o) for o in r.outputs)
            self._say("info", f"done {', '.join(str(m) for m in members)} -> {outs}" if r.status == "done" else f"skipped {key}: outputs exist")
            if r.status == "done":
                self.report.done.append(r)
                if self.on_result:
                    self.on_result(r)
            else:
                self.report.skipped += 1
            return
        if UNREADABLE in r.notes:
            bad = next((t for t in tracks if str(t.path) == str(Path(r.input).resolve())), tracks[0])
            if self._not_decodable(bad, r):
                self.journal.fail(key, r.error or "does not decode")
                self._fail_for_good(members, tracks, r.error or "does not decode", record=False)
            else:
                self.journal.abandon(key)
            return
        e = self.journal.get(key)
        attempts = e.attempts if e is not None else 1
        if attempts < self.opts.retries:
            delay = self.opts.backoff_s * (2 ** (attempts - 1))
            self.journal.fail(key, r.error or "failed", retry_in_s=delay)
            for t in tracks:
                t.not_before = now + delay
            self._say("warning", f"failed (attempt {attempts} of {self.opts.retries}, retry in {delay:g} s): {r.error}")
        else:
            self.journal.fail(key, r.error or "failed")
            self._fail_for_good(members, tracks, r.error or "failed", record=False)

    def _not_decodable(self, t: _Track, r: FileResult) -> bool:
        """After a decode failure: True if the file is bad, False if it may still be being written."""
        now = time.monotonic()
        if self._changed(t):
            self._update(now)  # picks up the new size/mtime: settle again
            self.log.info("%s: still being written (changed while decoding)", t.path)
            return False
        t.strikes += 1
        if t.strikes < self.opts.bad_strikes:
            t.not_before = now + self.opts.settle_s
            self.log.info("%s: does not decode yet (%s); checking again in %g s", t.path, r.error, self.opts.settle_s)
            return False
        return True

    def _fail_for_good(self, members: list[Path], tracks: list[_Track], error: str, record: bool = True) -> None:
        if record:
            try:
                if self.journal.get(members[0]) is None:
                    self.journal.begin(members)
                self.journal.fail(members[0], error)
            except OSError:
                pass
        for m in members:
            try:
                st = m.stat()
                self._final[str(m)] = (st.st_size, st.st_mtime_ns)
            except OSError:
                pass
        for t in tracks:
            self._tracks.pop(str(t.path), None)
        r = FileResult(members[0], "failed", error=error if str(members[0]) in error or members[0].name in error else f"{members[0]}: {error}")
        self.report.failed.append(r)
        self._say("error", f"failed {r.error}")
        if self.opts.failed_dir is not None:
            fd = Path(self.opts.failed_dir)
            for m in members:
                dest = self._move(m, fd)
                try:
                    with open(fd / ERROR_LOG_NAME, "a", encoding="utf-8") as f:
                        f.write(f"{datetime.now().isoformat(timespec='seconds')}\t{(dest or m).name}\t{r.error}\n")
                except OSError as e:
                    self._say("warning", f"cannot write {fd / ERROR_LOG_NAME}: {e}")
        if self.on_result:
            self.on_result(r)

    def _remember_done(self, members: list[Path], entry: Entry | None) -> None:
        if entry is None:
            return
        for m in entry.members:
            self._members[m.path] = entry

    def _move(self, src: Path, dest_dir: Path) -> Path | None:
        try:
            dest = _unique(dest_dir, src.name)
            shutil.move(str(src), str(dest))
            return dest
        except OSError as e:
            self._say("warning", f"cannot move {src} to {dest_dir}: {e}")
            return None

    # -- brackets -----------------------------------------------------------------------------------
    def _probe_for_pool(self, t: _Track) -> None:
        """Decode a settled bracket file; if it decodes, read its header once and pool it."""
        from .hdr.group import probe

        r = self._run(Item(self._index, [t.path]), probe_only=True)
        if r.status == "done":
            if self._changed(t):
                self._update(time.monotonic())
                return
            try:
                t.info = probe(t.path)
            except Exception as e:  # RestoreError, or a library's own error on a hostile header
                self._fail_for_good([t.path], [t], failure_result(t.path, e).error)
                return
            t.pooled = True
            self._last_pool_add = time.monotonic()
            return
        if self._not_decodable(t, r):
            self._fail_for_good([t.path], [t], r.error or "does not decode")

    def _groups(self, now: float) -> bool:
        pooled = {str(t.path): t for t in self._tracks.values() if t.pooled and t.info is not None}
        settling = any(not t.pooled for t in self._tracks.values())
        flush = now - self._last_pool_add >= self.opts.group_timeout_s or (self.opts.once and not settling)
        order = capture_order([t.info for t in pooled.values()])
        if not order:
            return False
        g = self.pipe.spec.input.group

        def group_fn(infos):
            groups, failures, self._group_times = self.pipe.group_infos(infos)
            return groups, failures

        # complete by the rule first; a flush takes only what is left
        groups, failed = complete_brackets(order, group_fn, g.by, g.size, flush=False)
        if not groups and not failed and flush:
            groups, failed = complete_brackets(order, group_fn, g.by, g.size, flush=True)
        for frames, why in failed:
            paths = [i.path for i in frames]
            self._fail_for_good(paths, [pooled[str(p)] for p in paths if str(p) in pooled], why)
        worked = bool(failed)
        for grp in groups:
            members = [i.path for i in grp]
            tracks = [self._tracks[str(p)] for p in members if str(p) in self._tracks]
            if len(tracks) != len(members) or any(now < t.not_before for t in tracks):
                continue
            self._process_group(members, tracks)
            worked = True
        return worked

    def _process_group(self, members: list[Path], tracks: list[_Track]) -> None:
        item = self._item(members, group=True, times=self._group_times)
        if item is None:
            return
        plan = self._plan(item)
        if plan is None:
            return
        if not self._begin(members, tracks):
            return
        r = self._run(item, overwrite=self.opts.overwrite or plan.changed, key=members[0])
        self._index += 1
        self._handle(r, members, tracks)

    # -- output --------------------------------------------------------------------------------------
    def _status_text(self) -> str:
        settling = sum(1 for t in self._tracks.values() if not t.pooled)
        pooled = sum(1 for t in self._tracks.values() if t.pooled)
        cur = f" | now: {self._current}" if self._current else ""
        pool = f", {pooled} in brackets" if self.grouped else ""
        return f"watching {self.in_dir}: {len(self.report.done)} done, {len(self.report.failed)} failed, {settling} waiting{pool}{cur}"

    def _say(self, level: str, msg: str) -> None:
        msg = printable(msg)  # file names are user data: undecodable bytes and control characters escaped
        getattr(self.log, level)(msg)
        if self.console is not None:
            from rich.markup import escape

            style = {"error": "red", "warning": "yellow"}.get(level)
            self.console.print(msg if style is None else f"[{style}]{escape(msg)}[/]", markup=style is not None, highlight=False, soft_wrap=True)
