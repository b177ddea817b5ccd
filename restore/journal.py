"""A crash-safe journal of batch work: one SQLite row per input (or bracket group).

The journal lives in the output folder (``<out_dir>/.restore-journal.sqlite``,
hidden, so input scans never pick it up) and records for every input its
path, size, modification time and SHA-256, its state, the number of attempts,
the last error and the outputs written.  ``restore run`` and ``restore watch``
consult it before each item and update it after, so a batch interrupted by a
crash, ``kill -9`` or a power cut resumes where it stopped:

* ``done`` with the same content and every output present: skipped;
* ``running`` (the process died mid-item): retried, unless every output was
  renamed into place after the attempt began, in which case it is recorded as
  done without redoing it (outputs are written atomically, so a final-named
  output is always complete);
* ``failed``: retried only on request (``restore run --retry-failed``) or,
  in the watch daemon, up to a number of attempts with exponential backoff;
* an input whose content changed (new size/mtime and a new hash) is processed
  again and its outputs replaced.

The database uses WAL mode with ``synchronous=NORMAL``: every committed state
change survives the death of the process; only a power failure can lose the
last few commits, which then makes those items run again (never a partial
output, since outputs are fsynced before their rename).
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import sqlite3
import stat
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterable, Literal

from .errors import TRANSIENT_NOTE, RestoreError
from .io import TMP_MARK

__all__ = ["Journal", "JournalError", "Entry", "Plan", "Member", "JOURNAL_NAME", "FolderLock", "fingerprint", "sha256_of", "remove_temp_files"]

#: File name of the journal inside the output folder (hidden: scans skip dot files).
JOURNAL_NAME = ".restore-journal.sqlite"

State = Literal["pending", "running", "done", "failed"]
STATES = ("pending", "running", "done", "failed")

_SCHEMA = """
CREATE TABLE IF NOT EXISTS items (
    path        TEXT PRIMARY KEY,           -- resolved input path (a group: its first file)
    members     TEXT NOT NULL,              -- JSON [{path, size, mtime_ns, sha256}] (one per file)
    size        INTEGER,                    -- of the first member, bytes
    mtime_ns    INTEGER,                    -- of the first member, ns since the epoch
    sha256      TEXT,                       -- of the first member's content
    state       TEXT NOT NULL CHECK (state IN ('pending', 'running', 'done', 'failed')),
    attempts    INTEGER NOT NULL DEFAULT 0, -- attempts on this content
    error       TEXT,                       -- last error (one line)
    outputs     TEXT NOT NULL DEFAULT '[]', -- JSON list of output paths
    created     REAL NOT NULL,              -- unix seconds
    updated     REAL NOT NULL,              -- unix seconds
    started_ns  INTEGER,                    -- wall clock (ns) when the last attempt began
    next_try    REAL                        -- unix seconds: earliest retry (watch backoff)
);
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
INSERT OR IGNORE INTO meta VALUES ('schema', '1');
"""


class JournalError(RestoreError):
    """The journal cannot be opened or written (another process holds it, not a journal, disk full ...)."""


def sha256_of(path: str | Path) -> str:
    """Hex SHA-256 of a file's content, read in 1 MiB blocks.

    Raises:
        OSError: the file cannot be read.
    """
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


@dataclass(frozen=True)
class Member:
    """One input file as the journal saw it: resolved path, size (bytes), mtime (ns), SHA-256 (hex or None)."""

    path: str
    size: int
    mtime_ns: int
    sha256: str | None = None

    def to_json(self) -> dict:
        return {"path": self.path, "size": self.size, "mtime_ns": self.mtime_ns, "sha256": self.sha256}


def fingerprint(path: str | Path, with_hash: bool = True) -> Member:
    """Size, mtime and (optionally) SHA-256 of a file.

    Raises:
        OSError: the file is missing or unreadable.
    """
    p = Path(path)
    st = p.stat()
    regular = stat.S_ISREG(st.st_mode)  # never open a FIFO or device to hash it: that could block forever
    return Member(_key(p), st.st_size, st.st_mtime_ns, sha256_of(p) if with_hash and regular else None)


def _clock_ns() -> int:
    """Wall clock in ns as file timestamps see it.

    Linux stamps files from the coarse real-time clock (a few ms behind the
    precise one); an output written right after :meth:`Journal.begin` must
    not look older than the attempt, so the attempt's start comes from the
    same clock where it exists.
    """
    coarse = getattr(time, "CLOCK_REALTIME_COARSE", 5 if os.name == "posix" and os.uname().sysname == "Linux" else None)
    if coarse is not None:
        try:
            return time.clock_gettime_ns(coarse)
        except (OSError, AttributeError):
            pass
    return time.time_ns()


def _db(key: str) -> str | bytes:
    """A path as SQLite stores it: text when it is valid UTF-8, else its raw bytes (a BLOB): file names that
    are not UTF-8 (``bad_\xff.png``, Python's surrogate escapes) round-trip exactly."""
    try:
        key.encode("utf-8")
        return key
    except UnicodeEncodeError:
        return os.fsencode(key)


def _from_db(value) -> str:
    return os.fsdecode(value) if isinstance(value, bytes) else value


def _text(message: str) -> str:
    """Free text (an error line) with any undecodable file-name bytes shown as ``\xff`` escapes."""
    return message.encode("utf-8", "surrogateescape").decode("utf-8", "backslashreplace")


def _key(path: str | Path) -> str:
    return str(Path(os.path.abspath(path)).resolve())


@dataclass
class Entry:
    """A journal row.

    Attributes:
        path: Resolved input path (key; for a group its first file).
        members: Every file of the item with its fingerprint.
        state: ``pending``, ``running``, ``done`` or ``failed``.
        attempts: Attempts on the current content (reset when it changes).
        error: Last error, one line.
        outputs: Output files of the last successful attempt.
        created, updated: Unix seconds.
        started_ns: Wall-clock time (ns) the last attempt began.
        next_try: Unix seconds before which a failed item is not retried (watch).
    """

    path: str
    members: list[Member]
    state: State
    attempts: int
    error: str | None
    outputs: list[str]
    created: float
    updated: float
    started_ns: int | None
    next_try: float | None


@dataclass
class Plan:
    """What to do with an item (:meth:`Journal.plan`).

    Attributes:
        action: ``process`` (run it), ``skip`` (done before: outputs present,
            same content), ``failed`` (failed before and not to be retried now),
            ``wait`` (failed; retry allowed from ``entry.next_try``), ``refused``
            (set by the batch: its output belongs to another input).
        reason: Why, in a few words (shown to the user).
        changed: The content differs from what the journal recorded (outputs
            must be replaced, not kept).
        entry: The journal row, if any.
    """

    action: Literal["process", "skip", "failed", "wait", "refused"]
    reason: str
    changed: bool = False
    entry: Entry | None = None
    outputs: list[Path] = field(default_factory=list)


class Journal:
    """SQLite journal of per-input state; see the module docstring for the semantics.

    Args:
        path: The database file (created with its folder if missing).  Use
            :meth:`for_output` for the default place in an output folder.
        busy_timeout_s: How long to wait for another process holding the
            SQLite lock (a reader, a brief write).
        exclusive: Hold an exclusive lock (``flock`` on ``<path>.lock``) while
            open, so two batches or daemons never work on one output folder
            at once (each would take the other's current item for a crashed
            one).  False: inspect a journal that may be in use.

    Raises:
        JournalError: another process uses the journal (``exclusive``), or the
            file cannot be opened as a journal (not writable, not SQLite).
    """

    def __init__(self, path: str | Path, busy_timeout_s: float = 30.0, exclusive: bool = True):
        self.path = Path(path)
        self._lock = None
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            if exclusive:
                self._lock = _exclusive_lock(Path(str(self.path) + ".lock"))
            self._db = sqlite3.connect(str(self.path), timeout=busy_timeout_s, isolation_level=None, check_same_thread=False)
            self._db.row_factory = sqlite3.Row
            self._db.execute("PRAGMA journal_mode=WAL")
            self._db.execute("PRAGMA synchronous=NORMAL")
            self._db.executescript(_SCHEMA)
        except (sqlite3.Error, OSError) as e:
            self._release()
            raise JournalError(f"{self.path}: cannot open the journal ({e}); use --no-journal to run without one") from None

    @classmethod
    def for_output(cls, out_dir: str | Path) -> "Journal":
        """The journal of an output folder: ``<out_dir>/.restore-journal.sqlite``."""
        return cls(Path(out_dir) / JOURNAL_NAME)

    # -- plumbing ---------------------------------------------------------------
    def close(self) -> None:
        """Close the database (a checkpoint folds the WAL back into the main file) and release the lock."""
        try:
            self._db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        except sqlite3.Error:
            pass
        self._db.close()
        self._release()

    def _release(self) -> None:
        if self._lock is not None:
            try:
                os.close(self._lock)
            except OSError:
                pass
            self._lock = None

    def __enter__(self) -> "Journal":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def _row(self, r: sqlite3.Row | None) -> Entry | None:
        if r is None:
            return None
        return Entry(
            path=_from_db(r["path"]),
            members=[Member(**m) for m in json.loads(r["members"])],
            state=r["state"],
            attempts=int(r["attempts"]),
            error=r["error"],
            outputs=list(json.loads(r["outputs"] or "[]")),
            created=float(r["created"]),
            updated=float(r["updated"]),
            started_ns=r["started_ns"],
            next_try=r["next_try"],
        )

    def get(self, path: str | Path) -> Entry | None:
        """The row of an input (any of the spellings of its path), or None."""
        return self._row(self._db.execute("SELECT * FROM items WHERE path = ?", (_db(_key(path)),)).fetchone())

    def entries(self, state: State | None = None) -> list[Entry]:
        """All rows (or those in ``state``), by path."""
        if state is None:
            rows = self._db.execute("SELECT * FROM items ORDER BY path").fetchall()
        else:
            rows = self._db.execute("SELECT * FROM items WHERE state = ? ORDER BY path", (state,)).fetchall()
        return [self._row(r) for r in rows]

    def member_index(self) -> dict[str, Entry]:
        """Every member file of every row (resolved path -> its row): finds the bracket a file belonged to."""
        out: dict[str, Entry] = {}
        for e in self.entries():
            for m in e.members:
                out[m.path] = e
        return out

    def counts(self) -> dict[str, int]:
        """Number of rows per state."""
        out = {s: 0 for s in STATES}
        for s, n in self._db.execute("SELECT state, COUNT(*) FROM items GROUP BY state"):
            out[s] = n
        return out

    # -- decisions ----------------------------------------------------------------
    @staticmethod
    def _same_content(old: list[Member], paths: list[Path]) -> bool | None:
        """True/False when the files match/differ from ``old``; None when a file is missing."""
        if len(old) != len(paths):
            return False
        for m, p in zip(old, paths):
            if m.path != _key(p):
                return False
            try:
                st = p.stat()
            except OSError:
                return None
            if st.st_size != m.size:
                return False
            if st.st_mtime_ns != m.mtime_ns:
                # touched or copied again: the same bytes still count as the same input
                try:
                    if m.sha256 is None or not stat.S_ISREG(st.st_mode) or sha256_of(p) != m.sha256:
                        return False
                except OSError:
                    return None
        return True

    def plan(
        self,
        members: list[Path],
        planned_outputs: Iterable[Path] = (),
        *,
        retry_failed: bool = False,
        max_attempts: int | None = None,
        now: float | None = None,
    ) -> Plan:
        """Decide whether an input (or bracket) needs processing.

        Args:
            members: The item's files (a single input: one path).
            planned_outputs: Outputs the pipeline would write for it; a done
                item is redone when one of them (or of the recorded outputs)
                is missing.
            retry_failed: Retry a failed item regardless of attempts.
            max_attempts: With this, a failed item is retried while it has
                had fewer attempts (after ``next_try``), and a ``running`` item
                (a crash mid-item) that already used them all is failed
                instead of being tried yet again.  None: failed items are
                retried only with ``retry_failed``.
            now: Unix seconds (default: the clock).

        Returns:
            A :class:`Plan`.
        """
        members = [Path(m) for m in members]
        planned = [Path(p) for p in planned_outputs]
        e = self.get(members[0])
        if e is None:
            return Plan("process", "new")
        same = self._same_content(e.members, members)
        if same is None:
            return Plan("process", "input missing", entry=e)
        if not same:
            return Plan("process", "input changed", changed=True, entry=e)
        e = self._refresh_times(e, members)
        outs = [Path(o) for o in e.outputs]
        if e.state == "done":
            if all(p.exists() for p in outs + planned):
                return Plan("skip", "done before (journal)", entry=e, outputs=outs)
            return Plan("process", "outputs missing", entry=e)
        if e.state == "running":
            if self._completed_before_crash(e, planned):
                self._set(e.path, state="done", error=None, outputs=json.dumps([str(p) for p in planned]), next_try=None)
                return Plan("skip", "completed before an interruption (journal)", entry=self.get(e.path), outputs=planned)
            if max_attempts is not None and e.attempts >= max_attempts and not retry_failed:
                msg = f"{e.path}: interrupted during each of {e.attempts} attempts; giving up"
                self._set(e.path, state="failed", error=msg, next_try=None)
                return Plan("failed", msg, entry=self.get(e.path))
            return Plan("process", "interrupted before (retrying)", entry=e)
        if e.state == "failed":
            if retry_failed:
                return Plan("process", "retrying a failed input", entry=e)
            if e.error and e.error.endswith(TRANSIENT_NOTE) and (max_attempts is None or e.attempts < max_attempts + 2):
                return Plan("process", "retrying after an output error (disk full, I/O)", entry=e)
            if max_attempts is not None and e.attempts < max_attempts:
                t = time.time() if now is None else now
                if e.next_try is not None and t < e.next_try:
                    return Plan("wait", f"retry in {e.next_try - t:.1f} s", entry=e)
                return Plan("process", f"retry {e.attempts + 1} of {max_attempts}", entry=e)
            return Plan("failed", e.error or "failed before", entry=e)
        return Plan("process", "pending", entry=e)

    def _refresh_times(self, e: Entry, members: list[Path]) -> Entry:
        """Record the current size/mtime of members whose bytes are unchanged (touched, copied again), so the
        next look at them needs no hash; returns the row as it now is."""
        fresh, moved = [], False
        for m, p in zip(e.members, members):
            try:
                st = p.stat()
            except OSError:
                return e
            if st.st_mtime_ns != m.mtime_ns:
                moved = True
            fresh.append(Member(m.path, st.st_size, st.st_mtime_ns, m.sha256))
        if not moved:
            return e
        self._db.execute("UPDATE items SET members = ?, size = ?, mtime_ns = ? WHERE path = ?",
                         (json.dumps([m.to_json() for m in fresh]), fresh[0].size, fresh[0].mtime_ns, _db(e.path)))
        return self.get(e.path)

    @staticmethod
    def _completed_before_crash(e: Entry, planned: list[Path]) -> bool:
        if not planned or e.started_ns is None:
            return False
        for p in planned:
            try:
                if p.stat().st_mtime_ns < e.started_ns:
                    return False
            except OSError:
                return False
        return True

    # -- state changes ------------------------------------------------------------
    def _set(self, key: str, **values) -> None:
        values["updated"] = time.time()
        if isinstance(values.get("error"), str):
            values["error"] = _text(values["error"])
        cols = ", ".join(f"{k} = ?" for k in values)
        self._db.execute(f"UPDATE items SET {cols} WHERE path = ?", (*values.values(), _db(key)))

    def mark_pending(self, members: list[Path]) -> None:
        """Record a new input as queued (``pending``).

        An input the journal already has a row for is left as recorded: if its
        content changed, :meth:`plan` must still see the old fingerprint (and
        the old outputs) to replace those outputs rather than skip it.
        """
        members = [Path(m) for m in members]
        if self.get(members[0]) is not None:
            return
        fps = [fingerprint(m, with_hash=False) for m in members]
        now = time.time()
        self._db.execute(
            "INSERT INTO items (path, members, size, mtime_ns, sha256, state, attempts, created, updated) VALUES (?, ?, ?, ?, NULL, 'pending', 0, ?, ?) "
            "ON CONFLICT(path) DO UPDATE SET members = excluded.members, size = excluded.size, mtime_ns = excluded.mtime_ns, "
            "sha256 = NULL, state = 'pending', attempts = 0, error = NULL, next_try = NULL, updated = excluded.updated",
            (_db(fps[0].path), json.dumps([m.to_json() for m in fps]), fps[0].size, fps[0].mtime_ns, now, now),
        )

    def begin(self, members: list[Path]) -> Entry:
        """Mark an item ``running`` (committed before any work starts) and count the attempt.

        The members are fingerprinted (size, mtime, SHA-256) now; attempts
        restart from 1 when the content differs from the recorded one.

        Raises:
            OSError: a member cannot be read.
        """
        members = [Path(m) for m in members]
        fps = [fingerprint(m) for m in members]
        key = fps[0].path
        old = self.get(key)
        same = old is not None and [(m.path, m.size, m.sha256) for m in old.members] == [(m.path, m.size, m.sha256) for m in fps]
        attempts = (old.attempts if same else 0) + 1
        now = time.time()
        self._db.execute(
            "INSERT INTO items (path, members, size, mtime_ns, sha256, state, attempts, error, outputs, created, updated, started_ns, next_try) "
            "VALUES (?, ?, ?, ?, ?, 'running', ?, NULL, ?, ?, ?, ?, NULL) "
            "ON CONFLICT(path) DO UPDATE SET members = excluded.members, size = excluded.size, mtime_ns = excluded.mtime_ns, "
            "sha256 = excluded.sha256, state = 'running', attempts = excluded.attempts, error = NULL, "
            "started_ns = excluded.started_ns, next_try = NULL, updated = excluded.updated"
            + ("" if same else ", outputs = excluded.outputs"),
            (_db(key), json.dumps([m.to_json() for m in fps]), fps[0].size, fps[0].mtime_ns, fps[0].sha256, attempts, "[]", now, now, _clock_ns()),
        )
        return self.get(key)

    def finish(self, path: str | Path, outputs: Iterable[Path]) -> None:
        """Mark an item ``done`` with the outputs it wrote (stored as absolute paths)."""
        self._set(_key(path), state="done", error=None, outputs=json.dumps([os.path.abspath(o) for o in outputs]), next_try=None)

    def output_owners(self) -> dict[str, str]:
        """Output file (absolute path) -> the input (key) whose ``done`` row records it.

        Lets a batch refuse an item that would overwrite another input's
        output (two inputs mapped to one name across runs).
        """
        out: dict[str, str] = {}
        for path, outputs in self._db.execute("SELECT path, outputs FROM items WHERE state = 'done'"):
            for o in json.loads(outputs or "[]"):
                out[os.path.abspath(o)] = _from_db(path)
        return out

    def fail(self, path: str | Path, error: str, retry_in_s: float | None = None) -> None:
        """Mark an item ``failed`` with a one-line error; ``retry_in_s``: earliest retry from now (watch backoff)."""
        first = (error or "failed").splitlines()[0] if error else "failed"
        self._set(_key(path), state="failed", error=first, next_try=None if retry_in_s is None else time.time() + retry_in_s)

    def abandon(self, path: str | Path) -> None:
        """Put an interrupted item back to ``pending``; the abandoned attempt is not counted."""
        key = _key(path)
        e = self.get(key)
        if e is not None:
            self._set(key, state="pending", attempts=max(0, e.attempts - 1), next_try=None)

    def forget(self, path: str | Path) -> None:
        """Delete an item's row."""
        self._db.execute("DELETE FROM items WHERE path = ?", (_db(_key(path)),))


class FolderLock:
    """The output folder's lock without a journal (``--no-journal``): two batches never write one folder at once.

    Raises:
        JournalError: another restore run/watch holds the folder.
    """

    def __init__(self, out_dir: str | Path):
        self._fd = _exclusive_lock(Path(out_dir) / (JOURNAL_NAME + ".lock"))

    def release(self) -> None:
        if self._fd is not None:
            try:
                os.close(self._fd)
            except OSError:
                pass
            self._fd = None


def _exclusive_lock(path: Path) -> int | None:
    """Take ``flock(LOCK_EX | LOCK_NB)`` on ``path``; the kernel drops it when the process dies (even ``kill -9``)."""
    try:
        import fcntl
    except ImportError:  # pragma: no cover - Windows: no advisory lock
        return None
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        try:
            holder = os.read(fd, 64).decode("ascii", "replace").strip()
        except OSError:
            holder = ""
        os.close(fd)
        raise JournalError(f"{path.parent}: another restore run/watch (pid {holder or '?'}) is working on this output folder") from None
    os.ftruncate(fd, 0)
    os.write(fd, str(os.getpid()).encode())
    return fd


_TMP_RE = re.compile(r"^\." + re.escape(TMP_MARK) + r"[0-9a-f]{8}-(?P<rest>.+)$")


def remove_temp_files(outputs: Iterable[Path]) -> list[Path]:
    """Delete temporary files an interrupted writer left for these final outputs.

    :func:`restore.io.atomic_path` names a temporary file
    ``.<TMP_MARK><8 hex>-<stem><suffix>`` beside the final one; only files of
    exactly that shape for the given outputs are removed.

    Returns:
        The files removed.
    """
    removed = []
    for out in outputs:
        out = Path(out)
        try:
            names = os.listdir(out.parent)
        except OSError:
            continue
        for n in names:
            m = _TMP_RE.match(n)
            if m and m.group("rest") == out.name:
                try:
                    (out.parent / n).unlink()
                    removed.append(out.parent / n)
                except OSError:
                    pass
    return removed
