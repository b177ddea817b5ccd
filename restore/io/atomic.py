"""Atomic output: write to a temporary file in the destination folder, fsync, rename."""

from __future__ import annotations

import contextlib
import errno
import os
import secrets
from pathlib import Path
from typing import Iterator

from ..errors import TRANSIENT_NOTE, OutputError

__all__ = ["atomic_path", "TMP_MARK"]

#: Temporary files carry this mark so folder scans and cleanup can ignore them.
TMP_MARK = ".restore-tmp-"


def _fsync_dir(path: Path) -> None:
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


@contextlib.contextmanager
def atomic_path(final: str | Path) -> Iterator[Path]:
    """Yield a temporary path beside ``final``; on success fsync and rename it over ``final``.

    The temporary name keeps the final extension (so writers that pick the
    format from the suffix work) and starts with a dot and :data:`TMP_MARK`,
    so it is hidden and recognisable.  No partial file is ever visible under
    the final name: on any exception the temporary file is removed and
    ``final`` is left as it was.

    Args:
        final: Destination path; its parent folder is created if missing.

    Yields:
        The temporary :class:`~pathlib.Path` to write to.
    """
    final = Path(final)
    try:
        final.parent.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise _output_error(final, e) from None
    tmp = final.parent / f".{TMP_MARK}{secrets.token_hex(4)}-{final.stem}{final.suffix}"
    try:
        yield tmp
        fd = os.open(tmp, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)
        os.replace(tmp, final)
        _fsync_dir(final.parent)
    except BaseException as e:
        with contextlib.suppress(OSError):
            tmp.unlink()
        if isinstance(e, (OSError, OutputError)) or _DISK_FULL in str(e):
            raise _output_error(final, e, tmp) from None
        raise


_TRANSIENT_ERRNOS = {errno.ENOSPC, errno.EDQUOT, errno.EIO}
_DISK_FULL = "No space left on device"


def _output_error(final: Path, e: BaseException, tmp: Path | None = None) -> OutputError:
    """An output error that names the final file (never the hidden temporary one); disk full and I/O errors
    are marked transient (:data:`restore.errors.TRANSIENT_NOTE`)."""
    if isinstance(e, OSError):
        why = e.strerror or str(e)
        transient = e.errno in _TRANSIENT_ERRNOS
    else:
        why = str(getattr(e, "problem", None) or e)
        transient = _DISK_FULL in str(e)
    if tmp is not None:
        why = why.replace(str(tmp), str(final))
    return OutputError(final, f"cannot write ({why}){' ' + TRANSIENT_NOTE if transient else ''}")
