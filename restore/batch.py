"""Crash-safe batches: plan every item first, then the journal around each, a stall limit, clean interruption.

:func:`run_batch` is what :meth:`restore.pipeline.Pipeline.run` and ``restore
run`` do:

* **plan** (:func:`plan_items`): inputs become items (one file, or one bracket
  of a folder's files), each with its output folder mirrored from the input
  tree and its planned outputs.  A plan in which two inputs map to one output
  is refused before anything runs, naming both;
* before an item, the journal decides (:meth:`restore.journal.Journal.plan`):
  skip what is done, retry what a crash interrupted, report (without
  retrying) what failed before unless ``retry_failed``; an item whose output
  the journal records as another input's is failed with both names;
* the item is marked ``running`` (committed) before any work, ``done`` with its
  outputs or ``failed`` with its error after;
* with ``timeout_s`` the item runs in a worker subprocess
  (:class:`restore.worker.IsolatedWorker`) that is killed when it makes no
  progress (no tile, stage or file finished) for that long; without it, in
  this process;
* SIGINT/SIGTERM (``handle_signals=True``, main thread only) abandon the
  current item cleanly: its temporary files are removed, its journal row goes
  back to ``pending``, and the report comes back with ``interrupted = True``.
"""

from __future__ import annotations

import contextlib
import os
import signal
import sqlite3
import threading
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import Callable, Iterator

from .errors import OutputError, RestoreError
from .journal import Journal, JournalError, Plan, remove_temp_files
from .pipeline.runner import FileResult, Pipeline, RunReport

__all__ = ["run_batch", "open_journal", "plan_items", "relative_dir", "Item", "OutputCollisionError", "SignalGuard"]


class OutputCollisionError(RestoreError):
    """Two inputs of one plan would write the same output file (refused before anything runs)."""


@dataclass
class Item:
    """One unit of batch work: a file, or a bracket of files merged into one result.

    Attributes:
        index: Position in the batch (``{index}`` in write templates).
        members: The file, or the bracket's files in capture order.
        group: ``members`` is a bracket.
        rel_dir: The item's folder relative to the input folder it came from
            (POSIX form, ``""`` at the top); outputs go to the same sub-folder.
        outputs: The files the pipeline's write steps will produce.
        times: Exposure times in seconds by file name, overriding metadata (brackets).
    """

    index: int
    members: list[Path]
    group: bool = False
    rel_dir: str = ""
    outputs: list[Path] = field(default_factory=list)
    times: dict[str, float] = field(default_factory=dict)

    @property
    def key(self) -> Path:
        """The journal key: the (first) member."""
        return self.members[0]

    @property
    def label(self) -> str:
        """How messages name the item: its path, or ``bracket a.png, b.png``."""
        return f"bracket {', '.join(p.name for p in self.members)}" if self.group else str(self.members[0])


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


def relative_dir(path: Path, roots: list[Path] | None) -> str:
    """The folder of ``path`` relative to the first of ``roots`` (input folders) that contains it.

    Returns:
        A POSIX relative path (``"101CANON"``, ``"DCIM/101CANON"``), or ``""``
        for a file directly in a root, named explicitly, or without roots.
    """
    parent = Path(os.path.abspath(path)).parent
    for root in roots or ():
        r = Path(os.path.abspath(root))
        if parent == r:
            return ""
        if r in parent.parents:
            return PurePosixPath(*parent.relative_to(r).parts).as_posix()
    return ""


def plan_items(pipe: Pipeline, inputs: list[Path], out_dir: Path, roots: list[Path] | None = None) -> tuple[list[Item], list[FileResult]]:
    """Turn input files into items with their planned outputs; the one planning function.

    Brackets (``input.group``) are formed per folder; each item's outputs go
    below ``out_dir`` in the item's folder relative to its root (the input
    tree is mirrored).

    Args:
        pipe: The pipeline.
        inputs: Input files.
        out_dir: Output folder.
        roots: The input folders (see :func:`relative_dir`).

    Returns:
        ``(items, failures)``: failures are inputs that cannot form an item
        (a bad bracket, an output template that leaves the output folder).

    Raises:
        OutputCollisionError: two items would write one output; the message
            names the output and both inputs (all such pairs, up to ten).
    """
    out_dir = Path(out_dir)
    failures: list[FileResult] = []
    if pipe.spec.input.group is not None:
        groups, failures, times = pipe.group_inputs([Path(p) for p in inputs])
        candidates = [(list(g), True, times) for g in groups]
    else:
        candidates = [([Path(p)], False, {}) for p in inputs]
    items: list[Item] = []
    for members, group, times in candidates:
        rel = relative_dir(members[0], roots)
        index = len(items)
        try:
            outs = pipe.planned_outputs(members, index, out_dir, group=group, rel_dir=rel)
        except RestoreError as e:
            failures.append(FileResult(members[0], "failed", error=f"{members[0]}: {e}"))
            continue
        items.append(Item(index, members, group, rel, outs, dict(times) if group else {}))
    _refuse_collisions(items)
    return items, failures


def _refuse_collisions(items: list[Item]) -> None:
    writers: dict[str, tuple[Path, list[Item]]] = {}
    for it in items:
        for o in it.outputs:
            entry = writers.setdefault(os.path.normcase(os.path.abspath(o)), (o, []))
            if it not in entry[1]:
                entry[1].append(it)
    clashes = [f"{o} <- {', '.join(i.label for i in its)}" for o, its in writers.values() if len(its) > 1]
    if clashes:
        more = f"\n  ... and {len(clashes) - 10} more" if len(clashes) > 10 else ""
        n = len(clashes)
        raise OutputCollisionError(
            f"{n} output{'s' if n > 1 else ''} would each be written by several inputs (nothing was run); "
            "put {suffix} or {name} in the write path to tell them apart:\n  " + "\n  ".join(clashes[:10]) + more
        )


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


def output_owner_conflict(item: Item, owners: dict[str, str]) -> str | None:
    """The error for an item whose planned output the journal records as another, still present, input's; else None."""
    me = os.path.abspath(item.key)
    for o in item.outputs:
        other = owners.get(os.path.abspath(o))
        if other is not None and Path(other) != Path(me).resolve() and Path(other).exists():
            return (f"{item.label}: its output {o} is already the output of {other} (journal); "
                    "put {suffix} or {name} in the write path to keep both")
    return None


def run_batch(
    pipe: Pipeline,
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
) -> RunReport:
    """Process ``inputs`` into ``out_dir``: plan, then each item with the journal and a stall limit.

    Args:
        pipe: The loaded pipeline.
        inputs: Input files (bracket pipelines group them with ``input.group``).
        out_dir: Output folder (created).
        roots: Input folders; outputs mirror the tree below them (:func:`relative_dir`).
        journal: See :func:`open_journal`; None = no journal.
        timeout_s: Stall limit in seconds: the item runs in a worker subprocess
            that is killed when no tile, stage or file finished for this long
            (a slow item that keeps making progress is never killed); None/0 =
            run in this process without a limit.
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
        OutputCollisionError: two inputs would write one output (nothing runs).
        RestoreError: the pipeline cannot be loaded (unknown model ...), or the
            output folder cannot be created; raised before any item is processed.
    """
    out_dir = Path(out_dir)
    report = RunReport()
    items, failures = plan_items(pipe, list(inputs), out_dir, roots)
    try:
        out_dir.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise OutputError(out_dir, f"cannot create the output folder ({e.strerror or e})") from None
    for r in failures:
        report.results.append(r)
        if on_result:
            on_result(r)
    jr, owned = open_journal(journal, out_dir)
    worker = None
    try:
        owners = jr.output_owners() if jr is not None else {}
        plans: list[Plan] = []
        for it in items:
            if jr is not None and not overwrite:
                plan = jr.plan(it.members, it.outputs, retry_failed=retry_failed)
            else:
                plan = Plan("process", "overwrite" if overwrite else "no journal")
            if plan.action == "process" and (clash := output_owner_conflict(it, owners)):
                plan = Plan("refused", clash)
            plans.append(plan)
        if any(p.action == "process" for p in plans):
            from .worker import make_runner

            worker = make_runner(pipe, timeout_s, device)
            worker.start()
        todo = [k for k, plan in enumerate(plans) if plan.action == "process"]
        next_todo = {a: b for a, b in zip(todo, todo[1:])}  # item -> the next item to process (read ahead)
        with SignalGuard(handle_signals) as guard:
            for k, (it, plan) in enumerate(zip(items, plans)):
                if guard.stop:
                    report.interrupted = True
                    break
                key = it.key
                if plan.action == "skip":
                    r = FileResult(key, "skipped", plan.outputs, plan.reason)
                elif plan.action == "refused":
                    r = FileResult(key, "failed", error=plan.reason)
                elif plan.action in ("failed", "wait"):
                    prev = plan.entry.error if plan.entry and plan.entry.error else f"{key}: failed before"
                    r = FileResult(key, "failed", error=f"{prev} (failed before; not retried: use --retry-failed)")
                else:
                    if on_start:
                        on_start(key, it.index)
                    if plan.entry is not None and plan.entry.state == "running":
                        remove_temp_files(it.outputs)  # left by the interrupted attempt
                    if jr is not None:
                        try:
                            jr.begin(it.members)
                        except OSError as e:
                            r = FileResult(key, "failed", error=f"{key}: cannot read ({e.strerror or e})")
                            report.results.append(r)
                            if on_result:
                                on_result(r)
                            continue
                    ow = overwrite or plan.changed
                    try:
                        with guard.interruptible():
                            ahead = items[next_todo[k]].members if k in next_todo else None
                            r = worker.run(it, overwrite=ow, tile_progress=tile_progress, prefetch=ahead, out_dir=out_dir)
                    except RestoreError:  # the worker cannot be restarted: stop, the item stays to do
                        if jr is not None:
                            jr.abandon(key)
                        raise
                    except KeyboardInterrupt:
                        remove_temp_files(it.outputs)
                        if jr is not None:
                            jr.abandon(key)
                        report.interrupted = True
                        break
                    _record(jr, key, r)
                    if r.status == "done":
                        for o in r.outputs:
                            owners[os.path.abspath(o)] = str(Path(os.path.abspath(key)).resolve())
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
