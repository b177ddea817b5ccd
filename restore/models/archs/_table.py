"""The architecture table (``restore models``, ``docs/models.md``), read from the descriptors."""

from __future__ import annotations

from ._base import ArchInfo, declared, registered

__all__ = ["architectures", "table_markdown", "tiling_text", "update_markdown", "BEGIN", "END"]


def tiling_text(info: ArchInfo) -> str:
    """How the model step tiles the architecture, in words (``"overlap 32"``, ``"fixed size"`` ...)."""
    if info.fixed_size:
        return "fixed size"
    if info.whole_image:
        return "whole image when it fits (global attention)"
    if info.overlap == 0:
        return "not tiled"
    if info.context_of is not None:  # the checkpoint's layout (depth, blocks) sets the context when it loads
        return f"overlap {info.overlap}, context from the checkpoint's layout ({info.context} for the default one)"
    return f"overlap {info.overlap}" + (f", context {info.context}" if info.context else "")


def architectures() -> list[dict[str, object]]:
    """One row per declared architecture (ours first, in registration order, then spandrel's).

    Returns:
        Dicts with ``arch``, ``source`` (``"restore"`` or ``"spandrel"``), ``task``,
        ``frames``, ``input_encoding``, ``output_range``, ``overlap``, ``context`` (the
        default layout's where ``context_per_checkpoint``: a checkpoint's own layout sets it when it loads),
        ``window``, ``tiling`` (:func:`tiling_text`), ``cpu_bf16`` (the measured
        verdict, ``""`` when not verified), ``fused_attention`` (bool), ``repo``,
        ``checkpoints`` (list of str), ``layout`` and ``notes``.
    """
    ours = registered()
    rows = []
    for arch, info in declared().items():
        o = info.official
        rows.append({
            "arch": arch,
            "source": "restore" if arch in ours else "spandrel",
            "task": info.task,
            "frames": info.frames,
            "input_encoding": info.input_encoding,
            "output_range": info.output_range,
            "overlap": info.overlap,
            "context": info.context,
            "context_per_checkpoint": info.context_of is not None,
            "window": info.window,
            "tiling": tiling_text(info),
            "cpu_bf16": info.cpu_bf16,
            "fused_attention": bool(info.attention),
            "repo": o.repo if o else "",
            "checkpoints": list(o.checkpoints) if o else [],
            "layout": o.layout if o else "",
            "notes": info.notes,
        })
    return rows


def _cell(text: object) -> str:
    return str(text).replace("|", "\\|").replace("\n", " ") or "-"


def table_markdown() -> str:
    """The architecture table as GitHub markdown (one line per architecture, ending in a newline).

    Columns: architecture (linked to its official repository), implemented by
    (restore or spandrel), task, frames, input encoding, overlap / context
    (input pixels), tiling, CPU bf16 (the measured verdict, or "fp32"), official
    checkpoints accepted.
    """
    head = ["architecture", "by", "task", "frames", "input", "overlap / context (px)", "tiling", "CPU bf16",
            "official checkpoints accepted"]
    lines = ["| " + " | ".join(head) + " |", "|" + "|".join("---" for _ in head) + "|"]
    for r in architectures():
        name = f"[{r['arch']}]({r['repo']})" if r["repo"] else str(r["arch"])
        context = f"{r['overlap']} / {r['context']}" + (" (default layout)" if r["context_per_checkpoint"] else "")
        cells = [name, r["source"], r["task"], r["frames"], r["input_encoding"], context,
                 r["tiling"], r["cpu_bf16"] or "fp32", "; ".join(r["checkpoints"])]  # type: ignore[arg-type]
        lines.append("| " + " | ".join(_cell(c) for c in cells) + " |")
    return "\n".join(lines) + "\n"


BEGIN, END = "<!-- arch-table:begin -->", "<!-- arch-table:end -->"


def update_markdown(text: str) -> str:
    """``text`` with the part between :data:`BEGIN` and :data:`END` replaced by :func:`table_markdown`.

    Raises:
        ValueError: the markers are missing or out of order.
    """
    i, j = text.find(BEGIN), text.find(END)
    if i < 0 or j < i:
        raise ValueError(f"markers {BEGIN} ... {END} not found")
    return text[: i + len(BEGIN)] + "\n" + table_markdown() + text[j:]

