"""Run pipeline items in a worker subprocess with a stall limit (no progress for N seconds).

A pathological input (a decoder that loops, a model that never returns, a
segfault in a native library) must not hang or kill a batch.  The
:class:`IsolatedWorker` keeps one child process (a fresh interpreter, so no
inherited OpenMP or CUDA state, talking over a socket pair with the
``multiprocessing`` connection protocol) that loads the pipeline and its models once and then processes the
items sent to it.  The child reports every finished tile, stage and file
read; when it reports nothing for ``timeout_s`` seconds (a stall: a decoder
that loops, a blocked read) the child is killed, the temporary files it left
are removed, the item is reported as failed (``timed out: no progress for N
s``) and a fresh child is started for the next item.  An item that is slow
but progressing (a 24 MP photo through a transformer on a CPU) is never
killed.

The child ignores SIGINT and SIGTERM (a Ctrl-C reaches the whole process
group; the parent decides what happens to the current item) and, on Linux,
dies with its parent (``PR_SET_PDEATHSIG``), so a ``kill -9`` of the parent
never leaves an orphan writing into the output folder.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Callable

from .errors import ModelError, RestoreError
from .journal import remove_temp_files
from .pipeline.runner import FileResult, failure_result

__all__ = ["IsolatedWorker", "InProcessRunner", "make_runner", "UNREADABLE", "TIMED_OUT"]

#: Note on a result whose input did not decode (``probe=True``): the watch daemon tells "still being written" from "bad file" with it.
UNREADABLE = "unreadable"
#: Note on a result that hit the time limit.
TIMED_OUT = "timed out"

_READY_LIMIT_S = 900.0  # loading models may take long (first use of a big checkpoint on a slow disk)


def _die_with_parent() -> None:
    if sys.platform.startswith("linux"):
        try:
            import ctypes

            ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG
        except Exception:
            pass


def _main() -> None:  # pragma: no cover - runs in the subprocess
    """Entry point of the worker subprocess: ``python -c 'from restore.worker import _main; _main()' FD``."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    _die_with_parent()
    conn = Connection(int(sys.argv[1]))
    try:
        msg = conn.recv()
    except (EOFError, OSError):
        return
    _, spec, device = msg
    _child(conn, spec, device)


def _child(conn, spec, device) -> None:  # pragma: no cover - runs in the subprocess
    from .pipeline.runner import Pipeline

    try:
        pipe = Pipeline(spec)
        pipe.prepare()
    except RestoreError as e:
        conn.send(("error", type(e).__name__, str(e)))
        return
    except Exception as e:
        conn.send(("error", "RestoreError", f"cannot load the pipeline: {type(e).__name__}: {e}"))
        return
    conn.send(("ready",))

    def tiles(done, total):
        conn.send(("tile", done, total))

    def stage(what):
        conn.send(("progress", what))

    while True:
        try:
            msg = conn.recv()
        except (EOFError, OSError):
            return
        if msg[0] == "stop":
            return
        job = msg[1]
        item = job["item"]
        if job["ahead"]:
            pipe.prefetch([Path(p) for p in job["ahead"]])
        if job["probe"]:
            bad = probe_decode(pipe, item.members)
            if bad is not None or job["probe_only"]:
                conn.send(("result", bad or FileResult(item.key, "done")))
                continue
        r = pipe.run_item(item.members, item.index, Path(job["out_dir"]), group=item.group, rel_dir=item.rel_dir, times=item.times,
                          overwrite=job["overwrite"], device=device, tile_progress=tiles, stage_progress=stage)
        conn.send(("result", r))


def probe_decode(pipe, members: list[Path]) -> FileResult | None:
    """Decode every member; the first that does not decode comes back failed with the note :data:`UNREADABLE`."""
    from .io import read

    for p in members:
        try:
            read(p, pipe.raw_options)
        except BaseException as e:  # noqa: BLE001 - interrupts propagate (failure_result gives None)
            r = failure_result(Path(p), e)
            if r is None:
                raise
            if isinstance(e, MemoryError):
                r.error = f"{p}: out of memory while decoding"
            r.notes.append(UNREADABLE)
            return r
    return None


class IsolatedWorker:
    """A child process that holds a loaded pipeline and processes items with a time limit.

    Args:
        pipeline: The :class:`~restore.pipeline.Pipeline` (its spec is sent to
            the child, which builds and prepares its own copy; the parent never
            loads the models).
        timeout_s: Stall limit in seconds: an item is stopped when the child
            reports no progress (a finished tile, stage or file read) for this
            long; None or 0 = no limit (the child still isolates crashes).
        device: ``cpu``, ``cuda``, ... (default: the pipeline's).

    The child starts on first use (:meth:`start`), and again after a timeout
    or a crash.  Use as a context manager or call :meth:`close`.
    """

    def __init__(self, pipeline, timeout_s: float | None = None, device: str | None = None):
        self.pipeline = pipeline
        self.timeout_s = timeout_s or None
        self.device = device
        self._proc = None
        self._conn = None
        self.restarts = 0

    # -- lifecycle ----------------------------------------------------------------
    @property
    def alive(self) -> bool:
        """The child is running."""
        return self._proc is not None and self._proc.poll() is None

    def start(self) -> None:
        """Start the child and wait until it has loaded the pipeline.

        The child is a fresh interpreter (``python -c``, not
        ``multiprocessing``, so a calling script is never re-imported) talking
        over a socket pair with pickled messages.

        Raises:
            ModelError / RestoreError: the child cannot load the pipeline
                (unknown model, bad checkpoint ...): a usage error, raised once.
        """
        if self.alive:
            return
        self._kill()
        if os.name != "posix":  # pragma: no cover
            raise RestoreError("a per-file time limit needs a POSIX system (Linux, macOS); use --timeout 0")
        parent_sock, child_sock = socket.socketpair()
        env = dict(os.environ)
        env["PYTHONPATH"] = os.pathsep.join([p for p in sys.path if isinstance(p, str)] + ([env["PYTHONPATH"]] if env.get("PYTHONPATH") else []))
        try:
            proc = subprocess.Popen(
                [sys.executable, "-c", "from restore.worker import _main; _main()", str(child_sock.fileno())],
                pass_fds=(child_sock.fileno(),), env=env, cwd=os.getcwd(), stdin=subprocess.DEVNULL,
            )
        except OSError as e:
            parent_sock.close()
            child_sock.close()
            raise RestoreError(f"cannot start the worker process: {e}") from None
        child_sock.close()
        parent = Connection(parent_sock.detach())
        self._proc, self._conn = proc, parent
        try:
            parent.send(("init", self.pipeline.spec, self.device))
            self._wait_ready(proc, parent)
        except BaseException:
            self._kill()
            raise

    def _wait_ready(self, proc, parent) -> None:
        deadline = time.monotonic() + _READY_LIMIT_S
        while True:
            if parent.poll(0.2):
                try:
                    msg = parent.recv()
                except (EOFError, OSError):
                    msg = None
                if msg and msg[0] == "ready":
                    return
                self._kill()
                if msg and msg[0] == "error":
                    cls = ModelError if msg[1] == "ModelError" else RestoreError
                    raise cls(msg[2])
                raise RestoreError("the worker process died while loading the pipeline")
            if proc.poll() is not None:
                self._kill()
                raise RestoreError(f"the worker process died while loading the pipeline (exit code {proc.returncode})")
            if time.monotonic() > deadline:
                self._kill()
                raise RestoreError(f"the worker process did not load the pipeline within {_READY_LIMIT_S:.0f} s")

    def _kill(self) -> None:
        if self._proc is not None:
            if self._proc.poll() is None:
                self._proc.kill()
            try:
                self._proc.wait(5)
            except subprocess.TimeoutExpired:
                pass
        if self._conn is not None:
            self._conn.close()
        self._proc = self._conn = None

    def close(self) -> None:
        """Stop the child (politely, then by force)."""
        if self.alive:
            try:
                self._conn.send(("stop",))
                self._proc.wait(5)
            except (OSError, subprocess.TimeoutExpired):
                pass
        self._kill()

    def __enter__(self) -> "IsolatedWorker":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    # -- work ---------------------------------------------------------------------------
    def run(
        self,
        item,
        *,
        out_dir: Path,
        overwrite: bool = False,
        probe: bool = False,
        probe_only: bool = False,
        tile_progress: Callable[[int, int], None] | None = None,
        prefetch: list[Path] | None = None,
    ) -> FileResult:
        """Process one :class:`~restore.batch.Item` in the child.

        The time limit is a *stall* limit: the child reports every finished
        tile, stage and file read, and is killed only when it reports nothing
        for ``timeout_s`` seconds.  A slow item that keeps making progress (a
        24 MP photo on a CPU) is never killed.

        Args:
            item: The item (its members, index, folder, planned outputs, exposure times).
            out_dir: Output folder.
            overwrite: Redo even when the outputs exist.
            probe: Decode every member first; a file that does not decode comes
                back failed with the note :data:`UNREADABLE`.
            probe_only: Only the decode check (a ``done`` result means it decodes).
            tile_progress: Called with ``(done, total)`` tiles.
            prefetch: The next item's files: the child starts decoding them
                while this item computes (:meth:`Pipeline.prefetch`).  If the
                child crashes meanwhile, the item is run once more without
                read-ahead, so a file whose decoder crashes is never blamed
                on the item before it.

        Returns:
            The :class:`FileResult`; never raises for a bad input, a stall
            or a crash of the child.

        Raises:
            KeyboardInterrupt: passed on after the child was killed and its
                temporary files removed (the caller abandons the item).
            RestoreError: the child cannot be (re)started.
        """
        self.start()
        t0 = last = time.monotonic()
        ahead = [str(p) for p in prefetch] if prefetch and not probe_only else None
        job = {"item": item, "out_dir": str(out_dir), "overwrite": overwrite, "probe": probe or probe_only,
               "probe_only": probe_only, "ahead": ahead}
        planned = list(item.outputs)
        try:
            self._conn.send(("item", job))
            while True:
                now = time.monotonic()
                left = None if self.timeout_s is None else self.timeout_s - (now - last)
                if left is not None and left <= 0:
                    self._abort(planned)
                    return FileResult(item.key, "failed", error=f"{item.label}: timed out: no progress for {self.timeout_s:g} s "
                                      f"(stopped after {now - t0:.0f} s; --timeout sets the limit)", seconds=now - t0, notes=[TIMED_OUT])
                if not self._conn.poll(0.5 if left is None else min(left, 0.5)):
                    if self._proc.poll() is not None:
                        raise EOFError
                    continue
                reply = self._conn.recv()
                last = time.monotonic()  # any message is progress
                if reply[0] == "tile":
                    if tile_progress:
                        tile_progress(reply[1], reply[2])
                    continue
                if reply[0] == "progress":
                    continue
                return reply[1]
        except (EOFError, OSError, BrokenPipeError):
            code = None
            if self._proc is not None:
                try:
                    code = self._proc.wait(1)
                except subprocess.TimeoutExpired:
                    code = None
            self._abort(planned)
            if ahead:  # the read-ahead of the next file may be what crashed: retry this item alone
                return self.run(item, out_dir=out_dir, overwrite=overwrite, probe=probe, tile_progress=tile_progress)
            why = f"signal {-code}" if code is not None and code < 0 else f"exit code {code}"
            return FileResult(item.key, "failed", error=f"{item.label}: the worker process crashed ({why})", seconds=time.monotonic() - t0)
        except BaseException:
            self._abort(planned)
            raise

    def _abort(self, planned_outputs: list[Path] | None) -> None:
        self._kill()
        self.restarts += 1
        if planned_outputs:
            remove_temp_files(planned_outputs)


class InProcessRunner:
    """The same interface as :class:`IsolatedWorker`, running in this process without a time limit.

    Used when no time limit is asked for (``--timeout 0``, API use): no
    subprocess, the models load here (:meth:`start`).
    """

    def __init__(self, pipeline, device: str | None = None):
        self.pipeline = pipeline
        self.device = device
        self.restarts = 0

    def start(self) -> None:
        """Load the models.

        Raises:
            ModelError / RestoreError: a model cannot be loaded.
        """
        self.pipeline.prepare()

    def close(self) -> None:
        """Nothing to release."""

    def __enter__(self) -> "InProcessRunner":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def run(self, item, *, out_dir: Path, overwrite=False, probe=False, probe_only=False, tile_progress=None, prefetch=None) -> FileResult:
        """See :meth:`IsolatedWorker.run` (no time limit; a KeyboardInterrupt propagates; atomic writes clean up after themselves)."""
        pipe = self.pipeline
        if prefetch and not probe_only:
            pipe.prefetch(prefetch)
        if probe or probe_only:
            bad = probe_decode(pipe, item.members)
            if bad is not None:
                return bad
            if probe_only:
                return FileResult(item.key, "done")
        return pipe.run_item(item.members, item.index, Path(out_dir), group=item.group, rel_dir=item.rel_dir, times=item.times,
                             overwrite=overwrite, device=self.device, tile_progress=tile_progress)


def make_runner(pipeline, timeout_s: float | None = None, device: str | None = None):
    """An :class:`IsolatedWorker` when ``timeout_s`` is set (> 0), else an :class:`InProcessRunner`."""
    if timeout_s:
        return IsolatedWorker(pipeline, timeout_s=timeout_s, device=device)
    return InProcessRunner(pipeline, device=device)
