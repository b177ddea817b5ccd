"""Atomic output: write to a temporary file in the destination folder, fsync, rename."""

from __future__ import annotations

import contextlib
import os
import secrets
from pathlib import Path
from typing import Iterator

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
    final.parent.mkdir(parents=True, exist_ok=True)
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
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            tmp.unlink()
        raise
