"""The batch engine: what runs, where, and whether it is done.

Layers (each imports only those below it; the engine never imports :mod:`restore.pipeline`, it is handed
a processor - a :class:`~restore.pipeline.Pipeline` - and, for other processes, its picklable
``factory()``)::

    cli / watch ─┐
    pipeline ────┴─> engine.loop ─> engine.executors ─> (in process | child process | Ray actors)
                        │  engine.plan (items, outputs, discovery)
                        └─ journal (SQLite, written by the driver only)

**An item's states** (its journal row; :mod:`restore.journal`)::

    (new) ──plan──> pending ──begin──> running ──result──> done | failed
                       ^                  │
                       └──── abandon ─────┘   (signal, worker lost: back to pending, attempt not counted)

    done    ──content changed / output missing──> running again (outputs replaced)
    failed  ──--retry-failed, or watch backoff──> running again
    running ──found at start (a crash)──────────> done if every output was renamed in after the attempt
                                                  began, else running again

**Who writes what.**

* The journal is written only by the driver (the process that runs :func:`run_batch` or the watch
  daemon), never by workers: one SQLite file, one writer, also when the workers are Ray actors on other
  machines.
* Outputs are written only by the worker that runs the item, atomically (hidden temporary file in the
  output folder, fsync, rename): a lost worker leaves at most a temporary file, which the retry removes.
  With Ray the output folder must be the same path on every node (a shared filesystem); the driver checks
  that every worker sees it before the first item.
* An item lost with its worker (crash, killed node) is resubmitted; since outputs are renamed into place
  whole, a second attempt replaces a first complete one with identical bytes: each output exists once.

Modules: :mod:`~restore.engine.plan` (Item, discovery filter, planning, collisions),
:mod:`~restore.engine.results` (FileResult, RunReport, the exception -> result mapping),
:mod:`~restore.engine.executors` (in-process, isolated child process), :mod:`~restore.engine.ray_executor`
(Ray actors), :mod:`~restore.engine.select` (``--executor``), :mod:`~restore.engine.loop` (the one loop, signals).
"""

from .executors import Executor, InProcessExecutor, IsolatedExecutor, local_executor
from .loop import SignalGuard, open_journal, run_batch
from .plan import Item, OutputCollisionError, collect_inputs, is_input_file, output_owner_conflict, plan_items, relative_dir
from .results import FileResult, RunReport, failure_result
from .select import EXECUTORS, make_executor

__all__ = [
    "run_batch", "open_journal", "SignalGuard",
    "Item", "OutputCollisionError", "collect_inputs", "is_input_file", "output_owner_conflict", "plan_items", "relative_dir",
    "FileResult", "RunReport", "failure_result",
    "Executor", "InProcessExecutor", "IsolatedExecutor", "local_executor", "make_executor", "EXECUTORS",
]
