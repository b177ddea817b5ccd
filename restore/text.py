"""Text that is safe to print or log: file names are user data.

A file name may hold bytes that are not UTF-8 (Python keeps them as surrogate escapes; printing or logging
them raises ``UnicodeEncodeError``) and control characters (an ANSI escape in a name would recolour or
rewrite the user's terminal).  :func:`printable` shows both as escapes, ``bad_\\xff.png``,
``esc_\\x1b[31mred.png``, so every line names the file it means and nothing else happens.
"""

from __future__ import annotations

import re

__all__ = ["printable"]

_CONTROL = re.compile(r"[\x00-\x08\x0b-\x1f\x7f-\x9f]")


def printable(text: object) -> str:
    """``str(text)`` with undecodable bytes and control characters (all but tab and newline) escaped."""
    s = str(text)
    s = s.encode("utf-8", "surrogateescape").decode("utf-8", "backslashreplace")
    return _CONTROL.sub(lambda m: f"\\x{ord(m.group()):02x}", s)
