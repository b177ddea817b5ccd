"""Crash-safe batches: the journal around every item, a per-item time limit, clean interruption.

:func:`run_batch` is what :meth:`restore.pipeline.Pipeline.run` does when it
is given a journal or a time limit (``restore run`` uses both by default):

* before an item, the journal decides (:meth:`restore.journal.Journal.plan`):
  skip what is done, retry what a crash interrupted, report (without
  retrying) what failed before unless ``retry_failed``;
* the item is marked ``running`` (committed) before any work, ``done`` with its
  outputs or ``failed`` with its error after;
* with ``timeout_s`` the item runs in a worker subprocess
  (:class:`restore.worker.IsolatedWorker`) that is killed when the limit
  passes; without it, in this process;
* SIGINT/SIGTERM (``handle_signals=True``, main thread only) abandon the
  current item cleanly: its temporary files are removed, its journal row goes
  back to ``pending``, and the report comes back with ``interrupted = True``.
"""

from __future__ import annotations

import contextlib
import signal
import sqlite3
import threading
from pathlib import Path
from typing import Callable, Iterator

from .errors import RestoreError
from .journal import Journal, JournalError, Plan, remove_temp_files
from .pipeline.runner import FileResult, Pipeline, RunReport
from .pipeline.stages import Context

__all__ = ["run_batch", "open_journal", "planned_outputs", "SignalGuard"]


def open_journal(journal, out_dir: Path) -> tuple[Journal | None, bool]:
    """Resolve the ``journal`` argument of :meth:`Pipeline.run`.

    Args:
        journal: A :class:`Journal`, ``True`` (the output folder's default
            journal), a path to a journal file, or None/False (none).
        out_dir: The output folder.

    Returns:
        ``(journal, owned)``: ``owned`` when this call opened it (the caller closes it).
    """
    if journal is None or journal is False:
        return None, False
    if isinstance(journal, Journal):
        return journal, False
    if journal is True:
        return Journal.for_output(out_dir), True
    return Journal(Path(journal)), True


def planned_outputs(pipe: Pipeline, members: list[Path], index: int, out_dir: Path, group: bool) -> list[Path]:
    """Outputs the pipeline's write steps would produce for an item (empty if a template is bad)."""
    try:
        if group:
            fields = pipe.group_fields(members, index)
            return [w.path_for(Context(out_dir=out_dir, fields=fields)) for w in pipe.writes]
        return pipe.planned_outputs(members[0], index, out_dir)
    except RestoreError:
        return []


class SignalGuard:
    """Turn SIGINT/SIGTERM into a stop request; interrupt only inside :meth:`interruptible`.

    Between items a signal just sets :attr:`stop` (the loop ends after the
    current step); while an item is processing it raises
    :class:`KeyboardInterrupt` there, so the item is abandoned cleanly.  Outside
    the main thread (where Python cannot install handlers) it does nothing.

    Attributes:
        stop: A signal arrived.
        signum: Which one (``signal.SIGINT`` / ``signal.SIGTERM``), or None.
    """

    def __init__(self, enabled: bool = True):
        self.enabled = enabled and threading.current_thread() is threading.main_thread()
        self.stop = False
        self.signum: int | None = None
        self._busy = False
        self._old: dict = {}

    def _handler(self, signum, frame) -> None:
        self.stop = True
        self.signum = signum
        if self._busy:
            self._busy = False
            raise KeyboardInterrupt

    def __enter__(self) -> "SignalGuard":
        if self.enabled:
            for s in (signal.SIGINT, signal.SIGTERM):
                self._old[s] = signal.signal(s, self._handler)
        return self

    def __exit__(self, *exc) -> None:
        for s, h in self._old.items():
            signal.signal(s, h)
        self._old.clear()

    @contextlib.contextmanager
    def interruptible(self) -> Iterator[None]:
        """While inside, a signal raises :class:`KeyboardInterrupt` at once."""
        if self.stop:
            raise KeyboardInterrupt
        self._busy = True
        try:
            yield
        finally:
            self._busy = False


def _record(journal: Journal | None, key: Path, r: FileResult) -> None:
    if journal is None:
        return
    if r.status in ("done", "skipped"):
        journal.finish(key, r.outputs)
    else:
        journal.fail(key, r.error or "failed")


def run_batch(
    pipe: Pipeline,
    inputs: list[Path],
    out_dir: Path,
    *,
    journal=None,
    timeout_s: float | None = None,
    overwrite: bool = False,
    retry_failed: bool = False,
    device: str | None = None,
    on_start: Callable[[Path, int], None] | None = None,
    on_result: Callable[[FileResult], None] | None = None,
    tile_progress: Callable[[int, int], None] | None = None,
    handle_signals: bool = False,
) -> RunReport:
    """Process ``inputs`` into ``out_dir`` with a journal and/or a per-item time limit.

    Args:
        pipe: The loaded pipeline.
        inputs: Input files (bracket pipelines group them with ``input.group``).
        out_dir: Output folder (created).
        journal: See :func:`open_journal`; None = no journal.
        timeout_s: Per-item limit in seconds (worker subprocess); None/0 = run
            in this process without a limit.
        overwrite: Redo items whose outputs exist (and that the journal has as done).
        retry_failed: Retry items the journal has as failed.
        device: Torch device for model steps.
        on_start, on_result, tile_progress: Progress callbacks.
        handle_signals: Catch SIGINT/SIGTERM to abandon the current item cleanly
            (the CLI sets it; only effective in the main thread).

    Returns:
        A :class:`RunReport`; ``interrupted`` is True when a signal (or
        KeyboardInterrupt) stopped it, in which case the items not reached are
        not in the report.

    Raises:
        RestoreError: the pipeline cannot be loaded (unknown model ...), raised
            before any item is processed.
    """
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    jr, owned = open_journal(journal, out_dir)
    report = RunReport()
    items: list[tuple[int, list[Path], bool]] = []
    if pipe.spec.input.group is not None:
        groups, failures = pipe.group_inputs(list(inputs))
        for r in failures:
            report.results.append(r)
            if on_result:
                on_result(r)
        items = [(i, list(g), True) for i, g in enumerate(groups)]
    else:
        items = [(i, [Path(p)], False) for i, p in enumerate(inputs)]

    worker = None
    try:
        plans: list[tuple[Plan, list[Path]]] = []
        for i, members, group in items:
            planned = planned_outputs(pipe, members, i, out_dir, group)
            if jr is not None and not overwrite:
                plan = jr.plan(members, planned, retry_failed=retry_failed)
            else:
                plan = Plan("process", "overwrite" if overwrite else "no journal")
            plans.append((plan, planned))
        if any(p.action == "process" for p, _ in plans):
            from .worker import make_runner

            worker = make_runner(pipe, timeout_s, device)
            worker.start()
        todo = [k for k, (plan, _) in enumerate(plans) if plan.action == "process"]
        next_todo = {a: b for a, b in zip(todo, todo[1:])}  # item -> the next item to process (read ahead)
        with SignalGuard(handle_signals) as guard:
            for k, ((i, members, group), (plan, planned)) in enumerate(zip(items, plans)):
                if guard.stop:
                    report.interrupted = True
                    break
                key = members[0]
                if plan.action == "skip":
                    r = FileResult(key, "skipped", plan.outputs, plan.reason)
                elif plan.action in ("failed", "wait"):
                    prev = plan.entry.error if plan.entry and plan.entry.error else f"{key}: failed before"
                    r = FileResult(key, "failed", error=f"{prev} (failed before; not retried: use --retry-failed)")
                else:
                    if on_start:
                        on_start(key, i)
                    if plan.entry is not None and plan.entry.state == "running":
                        remove_temp_files(planned)  # left by the interrupted attempt
                    if jr is not None:
                        try:
                            jr.begin(members)
                        except OSError as e:
                            r = FileResult(key, "failed", error=f"{key}: cannot read ({e.strerror or e})")
                            report.results.append(r)
                            if on_result:
                                on_result(r)
                            continue
                    ow = overwrite or plan.changed
                    try:
                        with guard.interruptible():
                            times = dict(getattr(pipe, "_times", {}) or {}) if group else None
                            ahead = items[next_todo[k]][1] if k in next_todo else None
                            r = worker.run(members, i, out_dir, group=group, overwrite=ow, times=times, planned_outputs=planned,
                                           tile_progress=tile_progress, prefetch=ahead)
                    except RestoreError:  # the worker cannot be restarted: stop, the item stays to do
                        if jr is not None:
                            jr.abandon(key)
                        raise
                    except KeyboardInterrupt:
                        remove_temp_files(planned)
                        if jr is not None:
                            jr.abandon(key)
                        report.interrupted = True
                        break
                    _record(jr, key, r)
                report.results.append(r)
                if on_result:
                    on_result(r)
    except sqlite3.Error as e:  # disk full, file removed under us ...
        raise JournalError(f"{jr.path if jr is not None else out_dir}: journal error ({e}); the batch stopped (run again to continue)") from None
    finally:
        if worker is not None:
            worker.close()
        if owned and jr is not None:
            jr.close()
    return report
