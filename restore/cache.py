"""The user cache: ``$XDG_CACHE_HOME/restore`` (default ``~/.cache/restore``).

Holds downloaded/converted weights (``weights/``), torch.compile kernels
(``inductor/``) and small JSON tables of per-machine measurements
(``memory-curves.json``, ``threads.json``).  The JSON tables are written
atomically; an unreadable one is treated as empty, and a read-only home only
means measuring again next time.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

__all__ = ["cache_dir", "read_table", "update_table"]


def cache_dir(*parts: str) -> Path:
    """``$XDG_CACHE_HOME/restore/<parts>`` (not created)."""
    return Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")).joinpath("restore", *parts)


def read_table(name: str) -> dict:
    """The JSON object in ``cache_dir(name)``; ``{}`` when missing or unreadable."""
    try:
        data = json.loads(cache_dir(name).read_text())
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}


def update_table(name: str, key: str, value) -> None:
    """Set ``key`` in the JSON table ``name`` (read again just before writing, written atomically);
    silently skipped where the cache cannot be written."""
    from .io.atomic import atomic_path

    path = cache_dir(name)
    table = read_table(name)
    table[key] = value
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        with atomic_path(path) as tmp:
            Path(tmp).write_text(json.dumps(table, indent=1, sort_keys=True))
    except OSError:
        pass
