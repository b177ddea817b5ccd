"""Planning: which files are inputs, how they become items, where each item's outputs go.

* :func:`is_input_file` - the one discovery filter (``restore run`` folder scans and ``restore watch``);
* :func:`collect_inputs` - files and folders -> input files;
* :func:`plan_items` - input files -> :class:`Item` objects (files, or brackets of one folder), with the
  item's folder relative to its input folder and its planned outputs; a plan in which two items write
  one output is refused (:class:`OutputCollisionError`);
* :func:`output_owner_conflict` - an item whose output the journal records as another input's.

The engine never imports the pipeline: it is handed a *processor* (a :class:`restore.pipeline.Pipeline`)
whose ``spec``, ``group_inputs`` and ``planned_outputs`` it calls.
"""

from __future__ import annotations

import fnmatch
import os
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import Iterable

from ..errors import InputError, RestoreError
from ..io import READ_SUFFIXES, TMP_MARK
from ..io.paths import not_regular
from .results import FileResult

__all__ = ["Item", "OutputCollisionError", "is_input_file", "collect_inputs", "relative_dir", "plan_items", "output_owner_conflict"]


class OutputCollisionError(RestoreError):
    """Two inputs of one plan would write the same output file (refused before anything runs)."""


@dataclass
class Item:
    """One unit of batch work: a file, or a bracket of files merged into one result.

    Attributes:
        index: Position in the batch (``{index}`` in write templates).
        members: The file, or the bracket's files in capture order.
        group: ``members`` is a bracket.
        rel_dir: The item's folder relative to the input folder it came from
            (POSIX form, ``""`` at the top); outputs go to the same sub-folder.
        outputs: The files the pipeline's write steps will produce.
        times: Exposure times in seconds by file name, overriding metadata (brackets).
    """

    index: int
    members: list[Path]
    group: bool = False
    rel_dir: str = ""
    outputs: list[Path] = field(default_factory=list)
    times: dict[str, float] = field(default_factory=dict)

    @property
    def key(self) -> Path:
        """The journal key: the (first) member."""
        return self.members[0]

    @property
    def label(self) -> str:
        """How messages name the item: its path, or ``bracket a.png, b.png``."""
        return f"bracket {', '.join(p.name for p in self.members)}" if self.group else str(self.members[0])


def is_input_file(path: Path, patterns: list[str] | None = None, excluded: Iterable[Path] = (), regular_only: bool = True) -> bool:
    """Whether a file found in an input folder is an input: the one discovery filter.

    Not hidden (``.name``), not one of our temporary files, a suffix a reader
    knows, matching ``patterns`` (shell patterns, case-insensitive) when
    given, not inside an ``excluded`` folder (resolved paths: the output
    folder when it lies inside the input folder, the watch daemon's move
    targets), and a regular file (not a FIFO, socket or folder; ``regular_only=False`` drops that test).
    """
    name = path.name
    if name.startswith(".") or TMP_MARK in name or path.suffix.lower() not in READ_SUFFIXES:
        return False
    if patterns and not any(fnmatch.fnmatch(name.lower(), pat.lower()) for pat in patterns):
        return False
    excluded = list(excluded)
    if excluded:
        try:
            rp = path.resolve()
        except OSError:
            return False
        if any(ex == rp.parent or ex in rp.parents for ex in excluded):
            return False
    return path.is_file() if regular_only else True


def collect_inputs(paths: Iterable[str | Path], patterns: list[str] | None = None, recursive: bool = False, exclude: Path | None = None,
                   skipped: list[tuple[Path, str]] | None = None) -> list[Path]:
    """Expand files and folders into a sorted list of input files.

    Folders contribute the files :func:`is_input_file` accepts (``exclude``:
    the output folder when it lies inside an input folder).  Files named
    explicitly are kept as given, so a wrong one is reported rather than
    silently dropped (the reader refuses a FIFO or device by name).

    Args:
        skipped: Gets ``(path, reason)`` for each entry of a folder that
            looks like an input by name but is not a regular file (a FIFO, a
            device, a socket, a broken link): left out, and named.

    Raises:
        InputError: a path that does not exist.
    """
    out: list[Path] = []
    ex = [Path(exclude).resolve()] if exclude else []
    for p in paths:
        p = Path(p)
        if p.is_dir():
            it = p.rglob("*") if recursive else p.iterdir()
            for f in sorted(it):
                if is_input_file(f, patterns, ex):
                    out.append(f)
                elif skipped is not None and not f.is_dir() and is_input_file(f, patterns, ex, regular_only=False):
                    skipped.append((f, not_regular(f) or "not a regular file"))
        elif p.exists():
            out.append(p)
        else:
            raise InputError(p, "no such file or folder")
    seen, uniq = set(), []
    for f in out:
        k = f.resolve()
        if k not in seen:
            seen.add(k)
            uniq.append(f)
    return uniq


def relative_dir(path: Path, roots: list[Path] | None) -> str:
    """The folder of ``path`` relative to the first of ``roots`` (input folders) that contains it.

    Returns:
        A POSIX relative path (``"101CANON"``, ``"DCIM/101CANON"``), or ``""``
        for a file directly in a root, named explicitly, or without roots.
    """
    parent = Path(os.path.abspath(path)).parent
    for root in roots or ():
        r = Path(os.path.abspath(root))
        if parent == r:
            return ""
        if r in parent.parents:
            return PurePosixPath(*parent.relative_to(r).parts).as_posix()
    return ""


def plan_items(pipe, inputs: list[Path], out_dir: Path, roots: list[Path] | None = None) -> tuple[list[Item], list[FileResult]]:
    """Turn input files into items with their planned outputs; the one planning function.

    Brackets (``input.group``) are formed per folder from headers read once
    (``pipe.group_inputs``); each item's outputs go below ``out_dir`` in the
    item's folder relative to its root (the input tree is mirrored).

    Args:
        pipe: The processor (a :class:`restore.pipeline.Pipeline`).
        inputs: Input files.
        out_dir: Output folder.
        roots: The input folders (see :func:`relative_dir`).

    Returns:
        ``(items, failures)``: failures are inputs that cannot form an item
        (a bad bracket, an output template that leaves the output folder).

    Raises:
        OutputCollisionError: two items would write one output; the message
            names the output and its inputs (up to ten outputs).
    """
    out_dir = Path(out_dir)
    failures: list[FileResult] = []
    if pipe.spec.input.group is not None:
        groups, failures, times = pipe.group_inputs([Path(p) for p in inputs])
        candidates = [(list(g), True, times) for g in groups]
    else:
        candidates = [([Path(p)], False, {}) for p in inputs]
    items: list[Item] = []
    for members, group, times in candidates:
        rel = relative_dir(members[0], roots)
        index = len(items)
        try:
            outs = pipe.planned_outputs(members, index, out_dir, group=group, rel_dir=rel)
        except RestoreError as e:
            failures.append(FileResult(members[0], "failed", error=f"{members[0]}: {e}"))
            continue
        items.append(Item(index, members, group, rel, outs, dict(times) if group else {}))
    refuse_collisions(items)
    return items, failures


def refuse_collisions(items: list[Item]) -> None:
    """Raise :class:`OutputCollisionError` if two items plan one output (every such output, its inputs)."""
    writers: dict[str, tuple[Path, list[Item]]] = {}
    for it in items:
        for o in it.outputs:
            entry = writers.setdefault(os.path.normcase(os.path.abspath(o)), (o, []))
            if it not in entry[1]:
                entry[1].append(it)
    clashes = [f"{o} <- {', '.join(i.label for i in its)}" for o, its in writers.values() if len(its) > 1]
    if clashes:
        more = f"\n  ... and {len(clashes) - 10} more" if len(clashes) > 10 else ""
        n = len(clashes)
        raise OutputCollisionError(
            f"{n} output{'s' if n > 1 else ''} would each be written by several inputs (nothing was run); "
            "put {suffix} or {name} in the write path to tell them apart:\n  " + "\n  ".join(clashes[:10]) + more
        )


def output_owner_conflict(item: Item, owners: dict[str, str]) -> str | None:
    """The error for an item whose planned output the journal records as another, still present, input's; else None.

    Args:
        item: The item about to run.
        owners: Output (absolute path) -> input key, from :meth:`restore.journal.Journal.output_owners`.
    """
    me = Path(os.path.abspath(item.key)).resolve()
    for o in item.outputs:
        other = owners.get(os.path.abspath(o))
        if other is not None and Path(other) != me and Path(other).exists():
            return (f"{item.label}: its output {o} is already the output of {other} (journal); "
                    "put {suffix} or {name} in the write path to keep both")
    return None
