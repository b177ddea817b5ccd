#!/usr/bin/env python3
"""Convert an official checkpoint to a verified ``<name>.safetensors`` plus a ``MANIFEST`` entry.

Usage:
    python data_tools/convert_checkpoint.py OFFICIAL.pth --name drsformer-rain200h \\
        --source "URL or description" --licence LICENCE [--task T] [--sha256 EXPECTED] \\
        [--out weights] [--when "one line"] [--force]

What it does, in order, refusing (one line naming the file, exit status 1) at
the first step it cannot verify:

1. ``--sha256`` given: the input file's SHA-256 must match it.
2. The checkpoint is read by :func:`restore.models.loader.load_state_dict`:
   ``.safetensors`` directly, pickles (``.pth``/``.pt``/``.ckpt``/``.bin``) only
   through ``torch.load(weights_only=True)``, so a pickle that needs code
   execution is refused.  Official wrappers (``{'params': sd}``,
   ``{'epoch', 'state_dict', 'optimizer'}`` with ``module.`` prefixes,
   ``{'icnn': sd, ...}``) are unwrapped.
3. The architecture is detected from the keys (spandrel's registry plus
   :mod:`restore.models.archs`); unknown keys are refused, and the state dict
   must load with ``strict=True`` into the detected architecture (same key
   set, same shapes).
4. ``<out>/<name>.safetensors`` is written to a temporary file in ``<out>``:
   the official key names, contiguous tensors of the checkpoint's own dtypes,
   metadata ``restore.arch``, ``restore.source``, ``restore.licence``,
   ``restore.input_sha256``.
5. The temporary file is re-loaded through :func:`restore.models.load_model`:
   its tensors must equal the checkpoint's, and the original and the converted
   model must give the same output on a small random input of a valid size
   (from the descriptor's size requirements; the fixed grid for fixed-size
   models; all stacked frames, e.g. 18 channels, for multi-frame HDR models).
6. ``<out>/MANIFEST`` must not hold an entry of the same name with another
   sha256, and ``<out>/<name>.safetensors`` must not be a different file,
   unless ``--force``.  Then the file is moved into place (``os.replace``) and
   the entry (name, file, sha256, arch, task, scale, licence, source, recipe =
   this command line, when) is added or updated, also atomically; a
   ``quality`` figure already recorded for an unchanged file is kept.

Nothing in ``<out>`` changes when a step fails (the folder itself may have been created).
"""

from __future__ import annotations

import argparse
import os
import re
import shlex
import sys
import tempfile
import warnings
from pathlib import Path
from typing import Any, Sequence

import torch
import yaml

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from restore.errors import RestoreError  # noqa: E402
from restore.models.loader import load_state_dict, sha256_file  # noqa: E402

__all__ = ["main", "convert", "build_parser", "detect_strict", "probe_input", "safetensors_bytes", "Refused"]

_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._+-]*$")
_HEX64 = re.compile(r"^[0-9a-fA-F]{64}$")
_PROG = "python data_tools/convert_checkpoint.py"
_PROBE_SEED = 1234


class Refused(Exception):
    """A check failed; ``str()`` is the one-line reason (it names the file)."""


def build_parser() -> argparse.ArgumentParser:
    """The command-line interface (see the module docstring)."""
    ap = argparse.ArgumentParser(
        prog=_PROG,
        description="Convert an official checkpoint to a verified .safetensors file and a MANIFEST entry.",
    )
    ap.add_argument("checkpoint", type=Path, help="official checkpoint (.pth/.pt/.ckpt/.bin or .safetensors)")
    ap.add_argument("--name", required=True, help="catalogue name, also the file stem (e.g. drsformer-rain200h)")
    ap.add_argument("--source", required=True, help="where the checkpoint comes from (URL or description)")
    ap.add_argument("--licence", "--license", dest="licence", required=True, help="licence of the weights (SPDX id)")
    ap.add_argument("--task", help="task name for the catalogue (default: the architecture's)")
    ap.add_argument("--sha256", help="expected SHA-256 of the input file; refuse on mismatch")
    ap.add_argument("--out", type=Path, default=ROOT / "weights", help="output folder holding MANIFEST (default: weights/)")
    ap.add_argument("--when", help="one line: when to use this model")
    ap.add_argument("--force", action="store_true", help="replace a manifest entry / file of the same name with different content")
    return ap


def _round_up(x: int, m: int) -> int:
    return -(-x // m) * m


def probe_input(desc: Any, info: Any) -> torch.Tensor:
    """A small random input every model of this descriptor accepts.

    Args:
        desc: spandrel ``ImageModelDescriptor``.
        info: the architecture's :class:`~restore.models.archs.ArchInfo`.

    Returns:
        float32 ``(1, C, H, W)`` in [0, 1) with ``C = desc.input_channels``
        (all frames stacked for multi-frame models, 18 for the HDR mergers),
        deterministic (seed 1234).  H, W: the grid baked into a fixed-size
        model (``image_shape`` / ``input_shape``), else the smallest sizes
        >= 16 (W one step larger than H unless square inputs are required)
        that satisfy ``desc.size_requirements``.

    Raises:
        Refused: a fixed-size model that does not say its size.
    """
    req = desc.size_requirements
    model = desc.model
    if info.fixed_size:
        shape = getattr(model, "image_shape", None) or getattr(model, "input_shape", None)
        if shape is None:
            raise Refused(f"fixed-size architecture {desc.architecture.id} does not expose its input size")
        h, w = int(shape[-2]), int(shape[-1])
    else:
        m = max(1, int(req.multiple_of))
        h = _round_up(max(int(req.minimum), 16), m)
        w = h if req.square else _round_up(h + 1, m)
    g = torch.Generator().manual_seed(_PROBE_SEED)
    return torch.rand(1, int(desc.input_channels), h, w, generator=g)


def detect_strict(sd: dict[str, torch.Tensor], src: Path) -> Any:
    """Detect the architecture of ``sd`` and load it with ``strict=True``.

    Same order as :func:`restore.models.loader.detect` (spandrel's
    ``MAIN_REGISTRY`` in detection order, with :mod:`restore.models.archs`
    registered), but a state dict that the detected architecture cannot load
    is reported with the keys torch names.

    Returns:
        spandrel ``ModelDescriptor`` (model in eval mode, CPU).

    Raises:
        Refused: no architecture claims the keys, its hyper-parameters cannot
            be inferred, or the strict load fails.
    """
    import spandrel

    import restore.models.archs  # noqa: F401  (registers our architectures)

    support = next((a for a in spandrel.MAIN_REGISTRY.architectures("detection") if a.detect(sd)), None)
    if support is None:
        raise Refused(f"{src}: architecture not recognised (neither spandrel nor restore knows these keys)")
    arch_id = support.architecture.id
    try:
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", message="torch.meshgrid")  # Swin-family code in spandrel
            desc = support.architecture.load(sd)
    except RuntimeError as e:  # nn.Module.load_state_dict(strict=True)
        text = " ".join(str(e).split())
        raise Refused(f"{src}: does not load strictly into {arch_id}: {text[:400]}") from None
    except Exception as e:  # hyper-parameter inference on inconsistent shapes
        raise Refused(f"{src}: detected {arch_id} but cannot build it: {type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''}") from None
    desc.model.eval()
    return desc


def _as_tuple(y: Any) -> tuple[torch.Tensor, ...]:
    return tuple(y) if isinstance(y, (tuple, list)) else (y,)


def _compare_outputs(a: Any, b: Any, where: Path) -> float:
    """Max |a - b| over all outputs; refuses on shape mismatch or non-finite values."""
    worst = 0.0
    for ya, yb in zip(_as_tuple(a), _as_tuple(b), strict=True):
        if ya.shape != yb.shape:
            raise Refused(f"{where}: converted model gives shape {tuple(yb.shape)}, original {tuple(ya.shape)}")
        if not (torch.isfinite(ya).all() and torch.isfinite(yb).all()):
            raise Refused(f"{where}: non-finite model output on the verification input")
        tol = 1e-5 * max(1.0, ya.abs().max().item())
        diff = (ya.float() - yb.float()).abs().max().item()
        if diff > tol:
            raise Refused(f"{where}: converted model differs from the original by {diff:.3g} (tolerance {tol:.3g})")
        worst = max(worst, diff)
    return worst


def safetensors_bytes(tensors: dict[str, torch.Tensor], metadata: dict[str, str]) -> bytes:
    """Serialise like ``safetensors.torch.save`` but byte-for-byte reproducible.

    safetensors writes ``__metadata__`` from a hash map, so the order of its
    keys (and hence the file's sha256) changes from run to run.  The header
    is re-emitted with the metadata keys sorted (tensor entries and data are
    left as the library wrote them), padded with spaces to a multiple of 8
    as the format requires.

    Args:
        tensors: name -> contiguous CPU tensor (no shared storage).
        metadata: str -> str.

    Returns:
        The complete ``.safetensors`` file content.
    """
    import json
    import struct

    from safetensors.torch import save

    raw = save(tensors, metadata=metadata)
    (n,) = struct.unpack("<Q", raw[:8])
    header = json.loads(raw[8 : 8 + n].decode("utf-8"))
    header["__metadata__"] = dict(sorted(header.get("__metadata__", {}).items()))
    text = json.dumps(header, separators=(",", ":"), ensure_ascii=False).encode("utf-8")
    text += b" " * (-len(text) % 8)
    return struct.pack("<Q", len(text)) + text + raw[8 + n :]


def _write_atomic_text(path: Path, text: str) -> None:
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w") as f:
            f.write(text)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def _read_manifest(path: Path) -> dict:
    if not path.exists():
        return {"version": 1, "models": []}
    try:
        data = yaml.safe_load(path.read_text()) or {}
    except yaml.YAMLError as e:
        raise Refused(f"{path}: invalid YAML: {str(e).splitlines()[0]}") from None
    if not isinstance(data, dict) or not isinstance(data.get("models", []), list):
        raise Refused(f"{path}: not a MANIFEST (expected a mapping with a 'models' list)")
    data.setdefault("version", 1)
    data.setdefault("models", [])
    return data


def convert(args: argparse.Namespace, recipe: str) -> dict:
    """Run the conversion described by parsed ``args``; see the module docstring.

    Args:
        args: from :func:`build_parser`.
        recipe: the command line recorded in the manifest entry.

    Returns:
        The manifest entry written (a dict).

    Raises:
        Refused: any failed check or unreadable/unwritable file (one line).
    """
    src: Path = args.checkpoint
    name: str = args.name
    if not _NAME.match(name) or name.endswith(".safetensors"):
        raise Refused(f"--name {name!r}: use letters, digits, '.', '_', '+', '-' (it becomes <name>.safetensors)")
    if args.sha256 is not None and not _HEX64.match(args.sha256):
        raise Refused(f"--sha256 {args.sha256!r}: expected 64 hexadecimal digits")
    if not src.is_file():
        raise Refused(f"{src}: checkpoint not found")
    out_dir: Path = args.out
    if out_dir.exists() and not out_dir.is_dir():
        raise Refused(f"{out_dir}: --out is not a folder")

    input_sha = sha256_file(src)
    if args.sha256 is not None and input_sha != args.sha256.lower():
        raise Refused(f"{src}: sha256 {input_sha} does not match --sha256 {args.sha256.lower()}; refused")

    try:
        sd, _ = load_state_dict(src)  # refuses pickles that need code execution
    except RestoreError as e:
        raise Refused(str(e)) from None
    desc = detect_strict(sd, src)
    model = desc.model.eval()
    own = model.state_dict()
    if set(own) != set(sd):
        missing, extra = sorted(set(own) - set(sd)), sorted(set(sd) - set(own))
        raise Refused(f"{src}: state dict does not match {desc.architecture.id} (missing {missing[:3]}, unexpected {extra[:3]})")
    try:
        model.load_state_dict(sd, strict=True)
    except RuntimeError as e:
        text = " ".join(str(e).split())
        raise Refused(f"{src}: does not load strictly into {desc.architecture.id}: {text[:400]}") from None

    from restore.models import load_model
    from restore.models.model import RestorationModel

    info = RestorationModel.from_descriptor(desc, name=name, source=src).info
    arch = str(desc.architecture.id)
    tensors = {k: v.detach().to("cpu").clone(memory_format=torch.contiguous_format) for k, v in sd.items()}
    meta = {
        "restore.arch": arch,
        "restore.source": str(args.source),
        "restore.licence": str(args.licence),
        "restore.input_sha256": input_sha,
    }

    try:
        out_dir.mkdir(parents=True, exist_ok=True)
        fd, tmp_name = tempfile.mkstemp(dir=out_dir, prefix=f".{name}.", suffix=".tmp.safetensors")
        os.close(fd)
    except OSError as e:
        raise Refused(f"{out_dir}: cannot write: {e.strerror or e}") from None
    tmp = Path(tmp_name)
    try:
        tmp.write_bytes(safetensors_bytes(tensors, meta))
        out_sha = sha256_file(tmp)
        # verify: the file reads back through the public loader, tensor for tensor and output for output
        try:
            converted = load_model(tmp)
        except RestoreError as e:
            raise Refused(f"{tmp}: written file does not load back: {e}") from None
        if converted.arch != arch:
            raise Refused(f"{tmp}: reloads as {converted.arch}, not {arch}")
        back = converted.module.state_dict()
        if set(back) != set(sd) or any(not torch.equal(back[k].to(sd[k].dtype), sd[k]) for k in sd):
            raise Refused(f"{tmp}: reloaded tensors differ from {src}")
        x = probe_input(desc, info)
        try:
            with torch.no_grad():
                ref = model(x)
                got = converted.module.eval()(x)
        except Exception as e:  # a model that cannot run on a valid input is not verified
            raise Refused(f"{src}: verification run of {arch} on {tuple(x.shape)} failed: {str(e).splitlines()[0]}") from None
        _compare_outputs(ref, got, src)

        manifest_path = out_dir / "MANIFEST"
        data = _read_manifest(manifest_path)
        old = next((m for m in data["models"] if isinstance(m, dict) and m.get("name") == name), None)
        final = out_dir / f"{name}.safetensors"
        if old is not None and old.get("sha256") != out_sha and not args.force:
            raise Refused(
                f"{manifest_path}: entry {name!r} has sha256 {str(old.get('sha256'))[:12]}..., the new file "
                f"{out_sha[:12]}...; refused (use --force to replace it)"
            )
        if final.exists() and sha256_file(final) != out_sha and not args.force:
            raise Refused(f"{final}: exists with different content; refused (use --force to replace it)")

        entry: dict[str, Any] = {
            "name": name,
            "file": final.name,
            "sha256": out_sha,
            "arch": arch,
            "task": args.task or info.task,
            "scale": int(desc.scale),
            "licence": str(args.licence),
            "source": str(args.source),
            "recipe": recipe,
            "when": args.when or f"{args.task or info.task} with {arch} ({name})",
        }
        if old is not None and old.get("sha256") == out_sha and old.get("quality"):
            entry["quality"] = old["quality"]
        others = [m for m in data["models"] if not (isinstance(m, dict) and m.get("name") == name)]
        data["models"] = sorted(others + [entry], key=lambda m: str(m.get("name", "")))
        text = yaml.safe_dump(data, sort_keys=False, width=120)

        os.replace(tmp, final)
        _write_atomic_text(manifest_path, text)
    except OSError as e:
        raise Refused(f"{e.filename or out_dir}: cannot write: {e.strerror or e}") from None
    finally:
        tmp.unlink(missing_ok=True)
    return entry


def main(argv: Sequence[str] | None = None) -> int:
    """Command-line entry point.

    Args:
        argv: arguments without the program name (default ``sys.argv[1:]``).

    Returns:
        0 on success (prints what was written).

    Raises:
        SystemExit: with a one-line message naming the file on any refusal
            (status 1), or argparse's status 2 for bad usage.
    """
    argv = list(sys.argv[1:] if argv is None else argv)
    args = build_parser().parse_args(argv)
    recipe = f"{_PROG} {shlex.join(argv)}"
    try:
        with torch.no_grad():
            entry = convert(args, recipe)
    except Refused as e:
        raise SystemExit(f"convert_checkpoint: {e}") from None
    print(f"wrote {args.out / entry['file']} ({entry['arch']}, sha256 {entry['sha256'][:12]}...), verified; updated {args.out / 'MANIFEST'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
