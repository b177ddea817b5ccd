"""Executors: where items run.  One interface, three places.

Every executor takes :class:`~restore.engine.plan.Item` objects with :meth:`Executor.submit` (at most
:attr:`Executor.capacity` in flight), hands back ``(item, FileResult)`` pairs from :meth:`Executor.wait`,
abandons what is in flight with :meth:`Executor.cancel`, and shuts down with :meth:`Executor.close`.
A result is never lost: a bad input, a stall, a crashed worker each come back as a failed result; only a
worker that cannot be started at all raises (:class:`RestoreError`, a usage error such as an unknown
model).

* :class:`InProcessExecutor` - in this process, one item at a time, no time limit (the Python API,
  ``--timeout 0``);
* :class:`IsolatedExecutor` - one child process (a fresh interpreter) that loads the pipeline once and
  runs the items; the child reports every finished tile, stage and file read, and is killed and restarted
  when it reports nothing for ``timeout_s`` seconds (a stall: a decoder that loops, a blocked read) or
  crashes (a segfault in a native library); its temporary files are removed and the item fails with the
  reason.  It ignores SIGINT/SIGTERM (the parent decides) and dies with its parent
  (``PR_SET_PDEATHSIG``), so a ``kill -9`` of the parent never leaves an orphan writing outputs;
* :class:`restore.engine.ray_executor.RayExecutor` - Ray actors on a cluster (optional extra).

Executors never import the pipeline package: they are given the processor (a
:class:`restore.pipeline.Pipeline`) and, for other processes, its picklable ``factory()``.
"""

from __future__ import annotations

import contextlib
import logging
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Callable

from ..errors import ModelError, RestoreError
from ..journal import remove_temp_files
from .plan import Item
from .results import WARMUP_BEGIN, WARMUP_END, FileResult, failure_result

__all__ = ["Executor", "InProcessExecutor", "IsolatedExecutor", "local_executor", "probe_decode", "UNREADABLE", "TIMED_OUT"]

#: Note on a result whose input did not decode (``probe=True``): the watch daemon tells "still being written" from "bad file" with it.
UNREADABLE = "unreadable"
#: Note on a result that hit the stall limit.
TIMED_OUT = "timed out"
_READY_LIMIT_S = 900.0  # loading models may take long (first use of a big checkpoint on a slow disk)


def probe_decode(pipe, members: list[Path]) -> FileResult | None:
    """Decode every member; the first that does not decode comes back failed with the note :data:`UNREADABLE`."""
    from ..io import read

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


def run_job(pipe, job: dict, device: str | None, tile_progress=None, stage_progress=None) -> FileResult:
    """Run one submitted job on a processor: optional read-ahead, decode probe, then the item.

    ``job``: ``item``, ``out_dir``, ``overwrite``, ``probe``, ``probe_only``, ``ahead`` (next item's files).
    """
    item: Item = job["item"]
    if job.get("ahead"):
        pipe.prefetch([Path(p) for p in job["ahead"]])
    if job.get("probe") or job.get("probe_only"):
        bad = probe_decode(pipe, item.members)
        if bad is not None:
            return bad
        if job.get("probe_only"):
            return FileResult(item.key, "done")
    return pipe.run_item(item.members, item.index, Path(job["out_dir"]), group=item.group, rel_dir=item.rel_dir, times=item.times,
                         overwrite=job.get("overwrite", False), device=device, tile_progress=tile_progress, stage_progress=stage_progress)


class Executor:
    """Where items run; see the module docstring.

    Attributes:
        capacity: Items that may be in flight at once.
        restarts: Worker restarts so far (stalls, crashes, lost nodes).
    """

    capacity = 1

    def __init__(self) -> None:
        self.restarts = 0
        self._pending: list[tuple[Item, dict]] = []

    @property
    def in_flight(self) -> int:
        """Items submitted and not yet returned by :meth:`wait`."""
        return len(self._pending)

    def start(self) -> None:
        """Load the pipeline where it will run (raises the usage error of a bad pipeline once, early)."""

    def submit(self, item: Item, *, out_dir: Path, overwrite: bool = False, probe: bool = False, probe_only: bool = False,
               prefetch: list[Path] | None = None) -> None:
        """Queue an item (``probe``: decode first, a file that does not decode fails with :data:`UNREADABLE`;
        ``probe_only``: only that check; ``prefetch``: the next item's files, decoded ahead).

        Raises:
            RestoreError: more than :attr:`capacity` items in flight.
        """
        if self.in_flight >= self.capacity:
            raise RestoreError(f"{type(self).__name__}: {self.capacity} item(s) already in flight")
        job = {"item": item, "out_dir": str(out_dir), "overwrite": overwrite, "probe": probe or probe_only, "probe_only": probe_only,
               "ahead": [str(p) for p in prefetch] if prefetch and not probe_only else None}
        self._pending.append((item, job))

    def wait(self, timeout: float | None = None, tile_progress: Callable[[int, int], None] | None = None) -> list[tuple[Item, FileResult]]:
        """Finished items, at least one when any is in flight (``timeout`` seconds at most, where the executor can wait).

        Raises:
            KeyboardInterrupt: passed on after the in-flight work was stopped and its temporary files
                removed (the caller abandons the items; :meth:`cancel` returns them).
            RestoreError: the worker cannot be (re)started.
        """
        raise NotImplementedError

    def cancel(self) -> list[Item]:
        """Abandon everything in flight (workers stopped, temporary files removed); the items come back."""
        items = [it for it, _ in self._pending]
        self._pending.clear()
        for it in items:
            remove_temp_files(it.outputs)
        return items

    def close(self) -> None:
        """Release workers."""

    def run(self, item: Item, *, out_dir: Path, overwrite: bool = False, probe: bool = False, probe_only: bool = False,
            tile_progress: Callable[[int, int], None] | None = None, prefetch: list[Path] | None = None) -> FileResult:
        """Submit one item and wait for it (nothing else may be in flight)."""
        self.submit(item, out_dir=out_dir, overwrite=overwrite, probe=probe, probe_only=probe_only, prefetch=prefetch)
        try:
            while True:
                for it, r in self.wait(None, tile_progress=tile_progress):
                    if it is item:
                        return r
        except BaseException:
            self.cancel()
            raise

    def __enter__(self) -> "Executor":
        return self

    def __exit__(self, *exc) -> None:
        self.close()


class InProcessExecutor(Executor):
    """Run items in this process, one at a time, without a time limit (a KeyboardInterrupt propagates;
    atomic writes clean up after themselves)."""

    def __init__(self, pipeline, device: str | None = None):
        super().__init__()
        self.pipeline = pipeline
        self.device = device
        self._quiet = None

    def start(self) -> None:
        """Load the models; from now until :meth:`close`, what C libraries print on stderr goes to the log
        (also from read-ahead threads).

        Raises:
            ModelError / RestoreError: a model cannot be loaded.
        """
        self.pipeline.prepare()
        if self._quiet is None:
            self._quiet = native_stderr_to_log()
            self._quiet.__enter__()

    def close(self) -> None:
        """Give stderr back."""
        if self._quiet is not None:
            self._quiet.__exit__(None, None, None)
            self._quiet = None

    def wait(self, timeout=None, tile_progress=None):
        if not self._pending:
            return []
        item, job = self._pending[0]
        r = run_job(self.pipeline, job, self.device, tile_progress=tile_progress)
        self._pending.pop(0)
        return [(item, r)]


#: Messages C libraries print on stderr (OpenEXR, libpng, libtiff, LibRaw) go here, not to the terminal:
#: the item's own one-line error says what went wrong; ``restore -v`` shows these too.
native_log = logging.getLogger("restore.native")


def _forward_to_log(stream) -> None:
    """Forward a worker's stderr, line by line, to :data:`native_log` (a daemon thread; ends with the stream)."""

    def pump():
        for raw in iter(stream.readline, b""):
            line = raw.decode("utf-8", "backslashreplace").rstrip()
            if line:
                native_log.debug("%s", line)
        stream.close()

    threading.Thread(target=pump, name="restore-worker-stderr", daemon=True).start()


@contextlib.contextmanager
def native_stderr_to_log():
    """While inside, file descriptor 2 (where C libraries print) goes to :data:`native_log` instead of the terminal."""
    try:
        saved = os.dup(2)
    except OSError:
        yield
        return
    r, w = os.pipe()
    sys.stderr.flush()
    os.dup2(w, 2)
    os.close(w)
    _forward_to_log(os.fdopen(r, "rb"))
    try:
        yield
    finally:
        sys.stderr.flush()
        os.dup2(saved, 2)  # closes the pipe's write end: the forwarding thread sees EOF
        os.close(saved)


def _die_with_parent() -> None:
    if sys.platform.startswith("linux"):
        try:
            import ctypes

            ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG
        except Exception:
            pass


def _child_main() -> None:  # pragma: no cover - runs in the subprocess
    """Entry point of the worker subprocess: ``python -c '...; _child_main()' FD``."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    _die_with_parent()
    conn = Connection(int(sys.argv[1]))
    try:
        _, factory, device = conn.recv()  # unpickling the factory imports the pipeline package, here only
    except (EOFError, OSError):
        return
    try:
        pipe = factory()
        pipe.prepare()
    except RestoreError as e:
        conn.send(("error", type(e).__name__, str(e)))
        return
    except Exception as e:
        conn.send(("error", "RestoreError", f"cannot load the pipeline: {type(e).__name__}: {e}"))
        return
    conn.send(("ready",))
    while True:
        try:
            msg = conn.recv()
        except (EOFError, OSError):
            return
        if msg[0] == "stop":
            return
        r = run_job(pipe, msg[1], device, tile_progress=lambda d, t: conn.send(("tile", d, t)),
                    stage_progress=lambda what: conn.send(("progress", what)))
        conn.send(("result", r))


class IsolatedExecutor(Executor):
    """A child process that holds a loaded pipeline and runs items under a stall limit.

    Args:
        pipeline: The processor; its picklable ``factory()`` is sent to the
            child, which builds and prepares its own copy (the parent never
            loads the models).
        timeout_s: Stall limit in seconds: an item is stopped when the child
            reports no progress (a finished tile, stage or file read) for this
            long; None or 0 = no limit (the child still isolates crashes).
        device: ``cpu``, ``cuda``, ... (default: the pipeline's).

    The child starts on :meth:`start` (or first use), and again after a stall or a crash.
    """

    def __init__(self, pipeline, timeout_s: float | None = None, device: str | None = None):
        super().__init__()
        self.pipeline = pipeline
        self.timeout_s = timeout_s or None
        self.device = device
        self._proc = None
        self._conn = None
        self._sent = False

    @property
    def alive(self) -> bool:
        """The child is running."""
        return self._proc is not None and self._proc.poll() is None

    def start(self) -> None:
        """Start the child and wait until it has loaded the pipeline.

        The child is a fresh interpreter (``python -c``, not ``multiprocessing``,
        so a calling script is never re-imported) talking over a socket pair
        with pickled messages.

        Raises:
            ModelError / RestoreError: the child cannot load the pipeline
                (unknown model, bad checkpoint ...): a usage error, raised once.
        """
        if self.alive:
            return
        self._kill()
        if os.name != "posix":  # pragma: no cover
            raise RestoreError("a per-file stall limit needs a POSIX system (Linux, macOS); use --timeout 0")
        parent_sock, child_sock = socket.socketpair()
        env = dict(os.environ)
        env["PYTHONPATH"] = os.pathsep.join([p for p in sys.path if isinstance(p, str)] + ([env["PYTHONPATH"]] if env.get("PYTHONPATH") else []))
        try:
            proc = subprocess.Popen(
                [sys.executable, "-c", "from restore.engine.executors import _child_main; _child_main()", str(child_sock.fileno())],
                pass_fds=(child_sock.fileno(),), env=env, cwd=os.getcwd(), stdin=subprocess.DEVNULL,
                stdout=subprocess.PIPE, stderr=subprocess.PIPE,  # the child talks over its socket; what C libraries print is logged
            )
            _forward_to_log(proc.stdout)
            _forward_to_log(proc.stderr)
        except OSError as e:
            parent_sock.close()
            child_sock.close()
            raise RestoreError(f"cannot start the worker process: {e}") from None
        child_sock.close()
        parent = Connection(parent_sock.detach())
        self._proc, self._conn = proc, parent
        try:
            parent.send(("init", self.pipeline.factory(), self.device))
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
        self._sent = False

    def close(self) -> None:
        """Stop the child (politely, then by force)."""
        if self.alive:
            try:
                self._conn.send(("stop",))
                self._proc.wait(5)
            except (OSError, subprocess.TimeoutExpired):
                pass
        self._kill()

    def cancel(self) -> list[Item]:
        if self._pending and self.alive:
            self._kill()
            self.restarts += 1
        return super().cancel()

    def wait(self, timeout=None, tile_progress=None):
        """See :meth:`Executor.wait`; a stall, a crash or an interrupt kills the child (restarted on next use)."""
        if not self._pending:
            return []
        item, job = self._pending[0]
        result = self._run_job(item, job, tile_progress)
        self._pending.pop(0)
        return [(item, result)]

    def _run_job(self, item: Item, job: dict, tile_progress) -> FileResult:
        self.start()
        t0 = last = time.monotonic()
        warming = False
        try:
            self._conn.send(("item", job))
            while True:
                now = time.monotonic()
                limit = _READY_LIMIT_S if warming else self.timeout_s
                left = None if limit is None else limit - (now - last)
                if left is not None and left <= 0:
                    self._abort(item)
                    return FileResult(item.key, "failed", error=f"{item.label}: timed out: no progress for {limit:g} s "
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
                    warming = reply[1] == WARMUP_BEGIN or (warming and reply[1] != WARMUP_END)
                    continue
                return reply[1]
        except (EOFError, OSError, BrokenPipeError):
            code = None
            if self._proc is not None:
                try:
                    code = self._proc.wait(1)
                except subprocess.TimeoutExpired:
                    code = None
            self._abort(item)
            if job.get("ahead"):  # the read-ahead of the next file may be what crashed: retry this item alone
                return self._run_job(item, {**job, "ahead": None}, tile_progress)
            why = f"signal {-code}" if code is not None and code < 0 else f"exit code {code}"
            return FileResult(item.key, "failed", error=f"{item.label}: the worker process crashed ({why})", seconds=time.monotonic() - t0)
        except BaseException:
            self._abort(item)
            raise

    def _abort(self, item: Item) -> None:
        self._kill()
        self.restarts += 1
        remove_temp_files(item.outputs)


def local_executor(pipeline, timeout_s: float | None = None, device: str | None = None) -> Executor:
    """An :class:`IsolatedExecutor` with a stall limit (``timeout_s`` > 0), else an :class:`InProcessExecutor`."""
    if timeout_s:
        return IsolatedExecutor(pipeline, timeout_s=timeout_s, device=device)
    return InProcessExecutor(pipeline, device=device)
