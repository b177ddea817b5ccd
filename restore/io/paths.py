"""Paths for C libraries: OpenEXR and LibRaw take a file name as UTF-8 text, but a file name on Linux is bytes.

A name that is not valid UTF-8 (``bad_\\xff.exr``; Python keeps such bytes as surrogate escapes) cannot be
passed to them.  :func:`native_path` hands such a library a temporary symbolic link with a plain name that
points at the file (for reading, or for writing a file that does not exist yet), and removes it after.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import stat
import tempfile
from pathlib import Path
from typing import Iterator

__all__ = ["native_path", "not_regular"]


@contextlib.contextmanager
def native_path(path: str | Path) -> Iterator[str]:
    """A ``str`` path any C library can open for ``path``: itself when it is valid UTF-8, else a temporary
    symlink to it (same suffix when that is plain text)."""
    s = os.fspath(path)
    try:
        s.encode("utf-8")
    except UnicodeEncodeError:
        pass
    else:
        yield s
        return
    suffix = Path(s).suffix
    try:
        suffix.encode("ascii")
    except UnicodeEncodeError:
        suffix = ""
    d = tempfile.mkdtemp(prefix="restore-link-")
    try:
        link = os.path.join(d, "file" + suffix)
        os.symlink(os.path.abspath(s), link)
        yield link
    finally:
        shutil.rmtree(d, ignore_errors=True)


def not_regular(path: Path) -> str | None:
    """Why ``path`` is not a regular file one can read (a FIFO, a device, a socket, a folder, a broken
    link), or None.  Reading a FIFO blocks forever and a device like ``/dev/zero`` never ends: such files
    are refused by name before anything opens them."""
    try:
        st = os.stat(path)  # follows symlinks: a link to /dev/zero is a character device
    except FileNotFoundError:
        return "a broken symbolic link" if os.path.islink(path) else "no such file"
    except OSError as e:
        return f"cannot be read ({e.strerror or e})"
    mode = st.st_mode
    if stat.S_ISREG(mode):
        return None
    kind = ("a folder" if stat.S_ISDIR(mode) else "a FIFO (named pipe)" if stat.S_ISFIFO(mode) else "a socket" if stat.S_ISSOCK(mode)
            else "a character device" if stat.S_ISCHR(mode) else "a block device" if stat.S_ISBLK(mode) else "not a regular file")
    return f"not a regular file: {kind}" if kind != "not a regular file" else kind
