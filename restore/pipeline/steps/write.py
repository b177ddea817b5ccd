"""``write``: write the current image under the output folder; output path templates."""

from __future__ import annotations

import string
from pathlib import Path
from typing import Literal

from pydantic import Field, field_validator, model_validator

from ...errors import OutputError
from ...image import Image
from ...io import write
from ..base import Context, Stage
from ..options import _Strict
from ..registry import register_step

__all__ = ["TEMPLATE_FIELDS", "WriteOptions", "WriteStage", "template_fields", "fit_name", "output_path", "MAX_NAME_BYTES"]

#: The fields a write template may use (see :class:`WriteOptions`).
TEMPLATE_FIELDS = ("stem", "name", "suffix", "parent", "dir", "index", "pipeline", "group")


class WriteOptions(_Strict):
    """Write the current image.

    ``path``: template relative to the output folder; fields ``{stem}``
    (input name without suffix), ``{name}``, ``{suffix}`` (the input's
    extension without the dot), ``{parent}`` (input folder name), ``{dir}``
    (the input's folder relative to the input folder; outputs mirror it
    unless the template places it), ``{index}`` (position in the batch),
    ``{pipeline}``, ``{group}`` (brackets).  Fields take no format specs.  The
    format comes from the extension.  Templates may not be absolute or leave
    the output folder.
    """

    path: str
    bit_depth: Literal[8, 16, 32] | None = None
    dtype: Literal["half", "float"] = "half"
    compression: str | None = None
    quality: int = Field(95, ge=1, le=100)

    @field_validator("path")
    @classmethod
    def _safe_template(cls, v: str) -> str:
        from ...io import WRITE_SUFFIXES

        if not v.strip():
            raise ValueError("empty path template")
        if any(ord(c) < 32 or ord(c) == 127 for c in v):
            raise ValueError("path template contains a control character (a NUL, a newline ...)")
        p = Path(v)
        if p.is_absolute() or v.startswith(("/", "\\")) or (len(v) > 1 and v[1] == ":"):
            raise ValueError("path template must be relative to the output folder")
        if ".." in p.parts:
            raise ValueError("path template may not contain '..'")
        if p.suffix.lower() not in WRITE_SUFFIXES:
            raise ValueError(f"unsupported output extension {p.suffix!r}; use one of {sorted(WRITE_SUFFIXES)}")
        try:
            parts = list(string.Formatter().parse(v))
        except ValueError as e:
            raise ValueError(f"bad template: {e} (write a literal brace as {{{{ or }}}})") from None
        for _, fname, spec, conv in parts:
            if fname is None:
                continue
            if fname not in TEMPLATE_FIELDS:
                raise ValueError(f"unknown template field {{{fname}}}; known: {', '.join(TEMPLATE_FIELDS)}")
            if spec or conv:
                raise ValueError(f"template field {{{fname}}} takes no format spec or conversion")
        return v

    @model_validator(mode="after")
    def _options_fit_the_format(self):
        from ...io import write_option_problems

        given = {k: getattr(self, k) for k in sorted(self.model_fields_set - {"path"})}
        problems = write_option_problems(Path(self.path).suffix, given)
        if problems:
            raise ValueError("; ".join(problems))
        return self


def template_fields(template: str) -> set[str]:
    """The field names a write template uses (``"{dir}/{stem}.png"`` -> ``{"dir", "stem"}``)."""
    try:
        return {f for _, f, _, _ in string.Formatter().parse(template) if f is not None}
    except ValueError:
        return set()


#: Longest output file name in bytes: NAME_MAX (255) less the temporary-file prefix of an atomic write
#: (``.restore-tmp-xxxxxxxx-``, 22 bytes), so the hidden file being written fits too.
MAX_NAME_BYTES = 230


def fit_name(rel: str) -> str:
    """Shorten the file name of a relative output path that would exceed :data:`MAX_NAME_BYTES`: the stem
    is cut and given ``~`` and 8 hex digits of its SHA-1, so different long names stay different."""
    import hashlib

    head, sep, name = rel.rpartition("/")
    raw = name.encode("utf-8", "surrogateescape")
    if len(raw) <= MAX_NAME_BYTES:
        return rel
    p = Path(name)
    tag = "~" + hashlib.sha1(raw).hexdigest()[:8]
    room = MAX_NAME_BYTES - len(p.suffix.encode("utf-8", "surrogateescape")) - len(tag)
    stem = p.stem.encode("utf-8", "surrogateescape")[:room].decode("utf-8", "ignore")
    return f"{head}{sep}{stem}{tag}{p.suffix}"


def output_path(template: str, out_dir: Path, fields: dict) -> Path:
    """Expand a write template and make sure the result stays inside ``out_dir``.

    The input's folder relative to the input folder (``fields["dir"]``) is
    mirrored below ``out_dir`` unless the template places it itself with
    ``{dir}``: a card's ``100CANON/IMG_0001.CR2`` and ``101CANON/IMG_0001.CR2``
    get outputs in ``out/100CANON/`` and ``out/101CANON/``.

    Raises:
        OutputError: unknown field, or a path that leaves the output folder.
    """
    try:
        rel = template.format(**fields)
    except (KeyError, IndexError, ValueError) as e:
        raise OutputError(template, f"bad path template field {e}") from None
    sub_dir = fields.get("dir") or "."
    if sub_dir != "." and "dir" not in template_fields(template):
        rel = f"{sub_dir}/{rel}"
    rel = fit_name(rel)
    out_dir = Path(out_dir)
    p = (out_dir / rel).resolve()
    root = out_dir.resolve()
    if Path(rel).is_absolute() or ".." in Path(rel).parts or (p != root and root not in p.parents):
        raise OutputError(rel, "output path leaves the output folder; refused")
    return out_dir / rel


@register_step("write", options=WriteOptions, single_image=True, order=900)
class WriteStage(Stage):
    """Write the current image (atomically) under the output folder."""

    kind = "write"
    accepts_cfa = True  # a mosaic goes to .dng (io.write refuses it for other formats, naming the file)

    def __init__(self, opts: WriteOptions):
        self.opts = opts

    def path_for(self, ctx: Context) -> Path:
        """The output path for the current input (:func:`output_path` of the template in ``ctx.out_dir``).

        Raises:
            OutputError: no output folder, a bad template field, or a path leaving the output folder.
        """
        if ctx.out_dir is None:
            raise OutputError(self.opts.path, "no output folder given")
        return output_path(self.opts.path, ctx.out_dir, ctx.fields)

    def __call__(self, image: Image, ctx: Context) -> Image:
        if ctx.out_dir is None:  # in-memory use (Python API): writing is skipped
            return image
        p = self.path_for(ctx)
        o = self.opts
        write(image, p, bit_depth=o.bit_depth, dtype=o.dtype, compression=o.compression, quality=o.quality)
        ctx.outputs.append(p)
        return image
