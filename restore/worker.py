"""Run pipeline items in a worker subprocess with a per-item time limit.

A pathological input (a decoder that loops, a model that never returns, a
segfault in a native library) must not hang or kill a batch.  The
:class:`IsolatedWorker` keeps one child process (a fresh interpreter, so no
inherited OpenMP or CUDA state, talking over a socket pair with the
``multiprocessing`` connection protocol) that loads the pipeline and its models once and then processes the
items sent to it.  When an item exceeds its time limit the child is killed,
the temporary files it left are removed, the item is reported as failed
(``timed out after N s``) and a fresh child is started for the next item.

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
from .pipeline.runner import FileResult

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
    from .io import read
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

    while True:
        try:
            msg = conn.recv()
        except (EOFError, OSError):
            return
        if msg[0] == "stop":
            return
        _, kind, paths, index, out_dir, overwrite, probe, times, ahead = msg
        paths = [Path(p) for p in paths]
        if ahead:
            pipe.prefetch([Path(p) for p in ahead])
        if probe:
            bad = None
            for p in paths:
                try:
                    read(p, pipe.raw_options)
                except RestoreError as e:
                    bad = FileResult(p, "failed", error=str(e) if str(p) in str(e) else f"{p}: {e}", notes=[UNREADABLE])
                    break
                except MemoryError:
                    bad = FileResult(p, "failed", error=f"{p}: out of memory while decoding", notes=[UNREADABLE])
                    break
                except Exception as e:
                    bad = FileResult(p, "failed", error=f"{p}: {type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''}", notes=[UNREADABLE])
                    break
            if bad is not None or kind == "probe":
                conn.send(("result", bad or FileResult(paths[0], "done")))
                continue
        if kind == "group":
            pipe._times = dict(times or {})
            r = pipe.run_group(paths, index, Path(out_dir), overwrite=overwrite, device=device, tile_progress=tiles)
        else:
            r = pipe.run_file(paths[0], index, Path(out_dir), overwrite=overwrite, device=device, tile_progress=tiles)
        conn.send(("result", r))


class IsolatedWorker:
    """A child process that holds a loaded pipeline and processes items with a time limit.

    Args:
        pipeline: The :class:`~restore.pipeline.Pipeline` (its spec is sent to
            the child, which builds and prepares its own copy; the parent never
            loads the models).
        timeout_s: Time limit per item in seconds (decoding, stages and
            writing); None or 0 = no limit (the child still isolates crashes).
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
        paths: list[Path],
        index: int,
        out_dir: Path,
        *,
        group: bool = False,
        overwrite: bool = False,
        probe: bool = False,
        probe_only: bool = False,
        times: dict | None = None,
        planned_outputs: list[Path] | None = None,
        tile_progress: Callable[[int, int], None] | None = None,
        prefetch: list[Path] | None = None,
    ) -> FileResult:
        """Process one input (or one bracket with ``group=True``) in the child.

        Args:
            paths: The input (one path) or the bracket's files.
            index: Position in the batch (``{index}`` template field).
            out_dir: Output folder.
            overwrite: Redo even when the outputs exist.
            probe: Decode every input first; a file that does not decode comes
                back failed with the note :data:`UNREADABLE`.
            probe_only: Only the decode check (a ``done`` result means it decodes).
            times: Exposure times by file name (brackets).
            planned_outputs: Outputs whose temporary files to remove if the
                child is killed mid-item.
            tile_progress: Called with ``(done, total)`` tiles.
            prefetch: The next item's files: the child starts decoding them
                while this item computes (:meth:`Pipeline.prefetch`).  If the
                child crashes meanwhile, the item is run once more without
                read-ahead, so a file whose decoder crashes is never blamed
                on the item before it.

        Returns:
            The :class:`FileResult`; never raises for a bad input, a timeout
            or a crash of the child.

        Raises:
            KeyboardInterrupt: passed on after the child was killed and its
                temporary files removed (the caller abandons the item).
            RestoreError: the child cannot be (re)started.
        """
        paths = [Path(p) for p in paths]
        self.start()
        t0 = time.monotonic()
        ahead = [str(p) for p in prefetch] if prefetch and not probe_only else None
        msg = ("item", "probe" if probe_only else "group" if group else "file", [str(p) for p in paths], index, str(out_dir), overwrite, probe or probe_only, times, ahead)
        what = f"bracket {', '.join(p.name for p in paths)}" if group else str(paths[0])
        try:
            self._conn.send(msg)
            while True:
                left = None if self.timeout_s is None else self.timeout_s - (time.monotonic() - t0)
                if left is not None and left <= 0:
                    self._abort(planned_outputs)
                    return FileResult(paths[0], "failed", error=f"{what}: timed out after {self.timeout_s:g} s", seconds=time.monotonic() - t0, notes=[TIMED_OUT])
                if not self._conn.poll(0.5 if left is None else min(left, 0.5)):
                    if self._proc.poll() is not None:
                        raise EOFError
                    continue
                reply = self._conn.recv()
                if reply[0] == "tile":
                    if tile_progress:
                        tile_progress(reply[1], reply[2])
                    continue
                return reply[1]
        except (EOFError, OSError, BrokenPipeError):
            code = None
            if self._proc is not None:
                try:
                    code = self._proc.wait(1)
                except subprocess.TimeoutExpired:
                    code = None
            self._abort(planned_outputs)
            if ahead:  # the read-ahead of the next file may be what crashed: retry this item alone
                return self.run(paths, index, out_dir, group=group, overwrite=overwrite, probe=probe, times=times,
                                planned_outputs=planned_outputs, tile_progress=tile_progress)
            why = f"signal {-code}" if code is not None and code < 0 else f"exit code {code}"
            return FileResult(paths[0], "failed", error=f"{what}: the worker process crashed ({why})", seconds=time.monotonic() - t0)
        except BaseException:
            self._abort(planned_outputs)
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

    def run(self, paths, index, out_dir, *, group=False, overwrite=False, probe=False, probe_only=False, times=None, planned_outputs=None, tile_progress=None, prefetch=None) -> FileResult:
        """See :meth:`IsolatedWorker.run` (a KeyboardInterrupt propagates; atomic writes clean up after themselves)."""
        from .io import read

        paths = [Path(p) for p in paths]
        pipe = self.pipeline
        if prefetch and not probe_only:
            pipe.prefetch(prefetch)
        if probe or probe_only:
            for p in paths:
                try:
                    read(p, pipe.raw_options)
                except RestoreError as e:
                    return FileResult(p, "failed", error=str(e) if str(p) in str(e) else f"{p}: {e}", notes=[UNREADABLE])
                except MemoryError:
                    return FileResult(p, "failed", error=f"{p}: out of memory while decoding", notes=[UNREADABLE])
                except Exception as e:
                    return FileResult(p, "failed", error=f"{p}: {type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''}", notes=[UNREADABLE])
            if probe_only:
                return FileResult(paths[0], "done")
        if group:
            pipe._times = dict(times or {})
            return pipe.run_group(paths, index, Path(out_dir), overwrite=overwrite, device=self.device, tile_progress=tile_progress)
        return pipe.run_file(paths[0], index, Path(out_dir), overwrite=overwrite, device=self.device, tile_progress=tile_progress)


def make_runner(pipeline, timeout_s: float | None = None, device: str | None = None):
    """An :class:`IsolatedWorker` when ``timeout_s`` is set (> 0), else an :class:`InProcessRunner`."""
    if timeout_s:
        return IsolatedWorker(pipeline, timeout_s=timeout_s, device=device)
    return InProcessRunner(pipeline, device=device)
