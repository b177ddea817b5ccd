"""The one batch loop: plan -> journal -> execute -> record -> report.

:func:`run_batch` is what ``restore run``, :meth:`restore.pipeline.Pipeline.run` and the Python API do:

* **plan** (:func:`~restore.engine.plan.plan_items`): inputs become items (one file, or one bracket of a
  folder's files), each with its output folder mirrored from the input tree and its planned outputs; a
  plan in which two inputs map to one output is refused before anything runs, naming them;
* **journal** (:meth:`restore.journal.Journal.plan`): skip what is done, retry what a crash interrupted,
  report (without retrying) what failed before unless ``retry_failed``; an item whose output the journal
  records as another input's fails, naming both;
* **execute** (:mod:`restore.engine.executors`): the item is marked ``running`` (committed) before it is
  submitted; up to the executor's capacity run at once (one locally, several on a Ray cluster);
* **record**: ``done`` with its outputs or ``failed`` with its error, in the driver's journal only;
* **report**: each result to ``on_result`` as it arrives; a :class:`RunReport` at the end.

SIGINT/SIGTERM (``handle_signals=True``, main thread only) abandon the items in flight cleanly: their
temporary files are removed, their journal rows go back to ``pending``, and the report comes back with
``interrupted = True``.
"""

from __future__ import annotations

import contextlib
import os
import signal
import sqlite3
import threading
from pathlib import Path
from typing import Callable, Iterator

from ..errors import OutputError, RestoreError
from ..journal import FolderLock, Journal, JournalError, Plan, remove_temp_files
from .executors import Executor
from .plan import output_owner_conflict, plan_items
from .results import FileResult, RunReport
from .select import make_executor

__all__ = ["run_batch", "open_journal", "SignalGuard", "decide"]


def open_journal(journal, out_dir: Path) -> tuple[Journal | None, bool]:
    """Resolve the ``journal`` argument of :func:`run_batch`.

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


def decide(item, journal: Journal | None, owners: dict[str, str], *, overwrite: bool, retry_failed: bool) -> Plan:
    """What to do with an item before anything runs: the journal's verdict, or ``refused`` when its output
    belongs to another input (a pure function of the journal and the item)."""
    if journal is not None and not overwrite:
        plan = journal.plan(item.members, item.outputs, retry_failed=retry_failed)
    else:
        plan = Plan("process", "overwrite" if overwrite else "no journal")
    if plan.action == "process" and (clash := output_owner_conflict(item, owners)):
        return Plan("refused", clash)
    return plan


def settled_result(key: Path, plan: Plan) -> FileResult:
    """The result of an item the plan does not run (skipped, refused, failed before)."""
    if plan.action == "skip":
        return FileResult(key, "skipped", plan.outputs, plan.reason)
    if plan.action == "refused":
        return FileResult(key, "failed", error=plan.reason)
    prev = plan.entry.error if plan.entry and plan.entry.error else f"{key}: failed before"
    return FileResult(key, "failed", error=f"{prev} (failed before; not retried: use --retry-failed)")


def _record(journal: Journal | None, key: Path, r: FileResult) -> None:
    if journal is None:
        return
    if r.status in ("done", "skipped"):
        journal.finish(key, r.outputs)
    else:
        journal.fail(key, r.error or "failed")


def run_batch(
    pipe,
    inputs: list[Path],
    out_dir: Path,
    *,
    roots: list[Path] | None = None,
    journal=None,
    timeout_s: float | None = None,
    overwrite: bool = False,
    retry_failed: bool = False,
    device: str | None = None,
    on_start: Callable[[Path, int], None] | None = None,
    on_result: Callable[[FileResult], None] | None = None,
    tile_progress: Callable[[int, int], None] | None = None,
    handle_signals: bool = False,
    executor: Executor | str = "local",
    executor_options: dict | None = None,
) -> RunReport:
    """Process ``inputs`` into ``out_dir``: plan, then each item through the journal and an executor.

    Args:
        pipe: The processor (a :class:`restore.pipeline.Pipeline`).
        inputs: Input files (bracket pipelines group them with ``input.group``).
        out_dir: Output folder (created).
        roots: Input folders; outputs mirror the tree below them.
        journal: See :func:`open_journal`; None = no journal.
        timeout_s: Stall limit in seconds (an item is stopped when its worker
            reports no finished tile, stage or file for this long; a slow item
            that keeps making progress is never stopped); None/0 = run in this
            process without a limit (local executor).
        overwrite: Redo items whose outputs exist (and that the journal has as done).
        retry_failed: Retry items the journal has as failed.
        device: Torch device for model steps.
        on_start, on_result, tile_progress: Progress callbacks.
        handle_signals: Catch SIGINT/SIGTERM to abandon the items in flight
            cleanly (the CLI sets it; only effective in the main thread).
        executor: ``"local"``, ``"ray"``, or an :class:`Executor` instance.
        executor_options: For ``"ray"``: ``address``, ``workers``, ``gpus_per_worker``.

    Returns:
        A :class:`RunReport`; ``interrupted`` is True when a signal (or
        KeyboardInterrupt) stopped it, in which case the items not reached are
        not in the report.

    Raises:
        OutputCollisionError: two inputs would write one output (nothing runs).
        RestoreError: the pipeline cannot be loaded (unknown model ...), the
            output folder cannot be created, or the executor cannot start;
            raised before any item is processed.
    """
    out_dir = Path(out_dir)
    report = RunReport()
    items, failures = plan_items(pipe, list(inputs), out_dir, roots)
    try:
        out_dir.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise OutputError(out_dir, f"cannot create the output folder ({e.strerror or e})") from None

    def emit(r: FileResult) -> None:
        report.results.append(r)
        if on_result:
            on_result(r)

    for r in failures:
        emit(r)
    jr, owned = open_journal(journal, out_dir)
    lock = FolderLock(out_dir) if jr is None else None  # without a journal the folder is still ours alone
    ex: Executor | None = None
    owns_executor = not isinstance(executor, Executor)
    try:
        owners = jr.output_owners() if jr is not None else {}
        plans = [decide(it, jr, owners, overwrite=overwrite, retry_failed=retry_failed) for it in items]
        runnable = [k for k, p in enumerate(plans) if p.action == "process"]
        if runnable:
            ex = executor if isinstance(executor, Executor) else make_executor(
                pipe, timeout_s, device, kind=executor, out_dir=out_dir, **(executor_options or {}))
            ex.start()
        next_runnable = dict(zip(runnable, runnable[1:]))  # item -> the next item to run (read ahead)
        in_flight: dict[int, tuple] = {}  # id(item) -> item
        with SignalGuard(handle_signals) as guard:
            k = 0
            while k < len(items) or in_flight:
                if guard.stop:
                    report.interrupted = True
                    break
                if k < len(items) and plans[k].action != "process":
                    emit(settled_result(items[k].key, plans[k]))
                    k += 1
                    continue
                if k < len(items) and len(in_flight) < ex.capacity:
                    it, plan = items[k], plans[k]
                    if on_start:
                        on_start(it.key, it.index)
                    if plan.entry is not None and plan.entry.state == "running":
                        remove_temp_files(it.outputs)  # left by the interrupted attempt
                    if jr is not None:
                        try:
                            jr.begin(it.members)
                        except OSError as e:
                            emit(FileResult(it.key, "failed", error=f"{it.key}: cannot read ({e.strerror or e})"))
                            k += 1
                            continue
                    ahead = items[next_runnable[k]].members if ex.capacity == 1 and k in next_runnable else None
                    ex.submit(it, out_dir=out_dir, overwrite=overwrite or plan.changed, prefetch=ahead)
                    in_flight[id(it)] = it
                    k += 1
                    continue
                try:
                    with guard.interruptible():
                        done = ex.wait(0.5, tile_progress=tile_progress)
                except RestoreError:  # the worker cannot be restarted: stop, the items in flight stay to do
                    for it in ex.cancel():
                        if jr is not None:
                            jr.abandon(it.key)
                    in_flight.clear()
                    raise
                except KeyboardInterrupt:
                    report.interrupted = True
                    break
                for it, r in done:
                    in_flight.pop(id(it), None)
                    _record(jr, it.key, r)
                    if r.status == "done":
                        for o in r.outputs:
                            owners[os.path.abspath(o)] = str(Path(os.path.abspath(it.key)).resolve())
                    emit(r)
            if in_flight:  # interrupted: abandon what was running (temporary files removed, rows back to pending)
                for it in ex.cancel():
                    remove_temp_files(it.outputs)
                    if jr is not None:
                        jr.abandon(it.key)
    except sqlite3.Error as e:  # disk full, file removed under us ...
        raise JournalError(f"{jr.path if jr is not None else out_dir}: journal error ({e}); the batch stopped (run again to continue)") from None
    finally:
        if ex is not None:
            report.worker_restarts = ex.restarts
            if owns_executor:
                ex.close()
        if owned and jr is not None:
            jr.close()
        if lock is not None:
            lock.release()
    return report
