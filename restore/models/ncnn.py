"""Our own reader of ncnn ``.param`` / ``.bin`` models and converters to spandrel state dicts.

No ncnn library is needed: the two files are parsed here and the weights
are mapped onto the PyTorch key names of spandrel's architectures, so the
converted state dict loads (strictly) into ESRGAN/RRDBNet, Compact
(SRVGGNetCompact) or RealCUGAN.

Format (ncnn's plain-text ``.param``, little-endian ``.bin``):

``.param``
    line 1: magic ``7767517``; line 2: ``layer_count blob_count``; then one
    line per layer::

        Type  name  n_in  n_out  in_blob...  out_blob...  k=v  k=v ...

    ``k`` is an integer id; ``v`` an int, or a float when it holds ``.``,
    ``e`` or ``E``.  Array values have the id ``-23300 - k`` and the form
    ``-233kk=n,v1,...,vn``.  Ids used here: Convolution / Deconvolution
    ``0`` num_output, ``1`` kernel_w, ``11`` kernel_h, ``2`` dilation, ``3``
    stride, ``4`` pad, ``5`` bias_term, ``6`` weight_data_size, ``7`` group
    (depth-wise), ``9`` activation (1 ReLU, 2 LeakyReLU, 3 Clip, 4 Sigmoid),
    ``10`` activation params; InnerProduct ``0`` num_output, ``1``
    bias_term, ``2`` weight_data_size, ``9``/``10`` as above; PReLU ``0``
    num_slope.

``.bin``
    The weighted layers' data, concatenated in ``.param`` order, no header.
    A *tagged* array starts with a 4-byte little-endian tag:
    ``0x01306B47`` = fp16 values, padded with zeros to a multiple of 4
    bytes; ``0x00000000`` (and ``0x0002C056``) = fp32 values; any other
    non-zero tag = 8-bit table quantisation (256 fp32 table entries, then
    one uint8 index per value, padded to 4 bytes).  ``0x000D4B38`` (int8)
    is refused.  *Raw* arrays are fp32 with no tag.

    * Convolution / ConvolutionDepthWise / Deconvolution /
      DeconvolutionDepthWise: tagged weights (``weight_data_size`` values,
      ncnn order ``[out][in/group][kh][kw]``), then, if ``bias_term``, raw
      fp32 bias (``num_output``).
    * InnerProduct: tagged weights ``[out][in]``, then raw fp32 bias.
    * PReLU: raw fp32 slopes (``num_slope``).

    The file must be consumed exactly; anything left over or missing raises
    :class:`NcnnFormatError`.
"""

from __future__ import annotations

import math
import re
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Union

import numpy as np

from ..errors import ModelError

__all__ = [
    "NcnnFormatError",
    "Layer",
    "NcnnNet",
    "Conversion",
    "parse_param",
    "read_bin",
    "load_ncnn",
    "detect_family",
    "convert_rrdbnet",
    "convert_compact",
    "convert_realcugan",
    "to_state_dict",
]

MAGIC = 7767517
TAG_FP16 = 0x01306B47
TAG_INT8 = 0x000D4B38
TAG_FP32 = 0x00000000
TAG_FP32_SCALED = 0x0002C056  # fp32 written by caffe2ncnn next to int8 scales; read as plain fp32

ParamValue = Union[int, float, list]

#: Layer types with data in ``.bin`` that this reader understands.
WEIGHTED_TYPES = frozenset({"Convolution", "ConvolutionDepthWise", "Deconvolution", "DeconvolutionDepthWise", "InnerProduct", "PReLU"})
#: Layer types that carry no data in ``.bin`` (a type outside both sets is refused:
#: skipping unknown data would silently shift every later weight).
WEIGHTLESS_TYPES = frozenset({
    "Input", "Split", "Concat", "Eltwise", "BinaryOp", "UnaryOp", "Interp", "PixelShuffle", "Pooling", "Crop",
    "ReLU", "Sigmoid", "Clip", "TanH", "Swish", "HardSigmoid", "HardSwish", "Mish", "ELU", "Softmax",
    "Padding", "Reshape", "Permute", "Flatten", "Slice", "Dropout", "Noop", "Reorg", "ShuffleChannel",
})


class NcnnFormatError(ModelError):
    """A ``.param``/``.bin`` pair is malformed, unsupported, or not the expected network."""


@dataclass(frozen=True)
class Layer:
    """One ``.param`` line.

    Attributes:
        type: ncnn layer type (``Convolution``...).
        name: Layer name (unique in the file).
        inputs: Names of the bottom blobs.
        outputs: Names of the top blobs.
        params: Id -> value: ``int``, ``float``, or a list for arrays (the
            array id is stored as ``k``, not ``-23300-k``).
    """

    type: str
    name: str
    inputs: tuple[str, ...]
    outputs: tuple[str, ...]
    params: dict[int, ParamValue] = field(default_factory=dict, hash=False)

    def get(self, key: int, default: ParamValue = 0) -> ParamValue:
        """Parameter ``key`` or ncnn's ``default``."""
        return self.params.get(key, default)


@dataclass
class NcnnNet:
    """A parsed model.

    Attributes:
        layers: All layers in ``.param`` order.
        blob_count: The blob count from the header.
        weights: Layer name -> ``{"weight", "bias"}`` (conv-like and
            InnerProduct) or ``{"slope"}`` (PReLU): flat ``float32`` arrays
            in ncnn order.
    """

    layers: list[Layer]
    blob_count: int
    weights: dict[str, dict[str, np.ndarray]] = field(default_factory=dict)

    def of_type(self, *types: str) -> list[Layer]:
        """Layers of the given types, in order."""
        return [l for l in self.layers if l.type in types]

    @property
    def weighted(self) -> list[Layer]:
        """Layers with data in ``.bin``, in order."""
        return [l for l in self.layers if l.type in WEIGHTED_TYPES]


_FLOAT_RE = re.compile(r"[.eE]")


def _value(s: str, where: str) -> int | float:
    try:
        return float(s) if _FLOAT_RE.search(s) else int(s)
    except ValueError:
        raise NcnnFormatError(f"{where}: bad parameter value {s!r}") from None


def parse_param(source: str | Path | bytes) -> tuple[list[Layer], int]:
    """Parse a text ``.param`` (see the module docstring for the format).

    Args:
        source: A path, or the file's content as ``bytes``/``str`` (a ``str``
            holding a newline is taken as content, otherwise as a path).

    Returns:
        ``(layers, blob_count)``.

    Raises:
        NcnnFormatError: wrong magic, counts that do not match the lines,
            malformed layer lines or parameters, duplicate layer names.
        OSError: the file cannot be read.
    """
    if isinstance(source, bytes):
        text, where = source.decode("utf-8", "replace"), "<param>"
    elif isinstance(source, str) and "\n" in source:
        text, where = source, "<param>"
    else:
        text, where = Path(source).read_text(encoding="utf-8", errors="replace"), str(source)
    lines = [ln for ln in text.splitlines() if ln.strip()]
    if not lines or lines[0].strip() != str(MAGIC):
        raise NcnnFormatError(f"{where}: not an ncnn text .param (magic {MAGIC} missing)")
    try:
        layer_count, blob_count = (int(t) for t in lines[1].split())
    except (IndexError, ValueError):
        raise NcnnFormatError(f"{where}: line 2 must be 'layer_count blob_count'") from None
    body = lines[2:]
    if len(body) != layer_count:
        raise NcnnFormatError(f"{where}: header says {layer_count} layers, file has {len(body)} layer lines")
    layers: list[Layer] = []
    names: set[str] = set()
    for i, ln in enumerate(body, start=3):
        tok = ln.split()
        at = f"{where}:{i}"
        if len(tok) < 4:
            raise NcnnFormatError(f"{at}: layer line needs 'type name n_in n_out ...'")
        typ, name = tok[0], tok[1]
        try:
            n_in, n_out = int(tok[2]), int(tok[3])
        except ValueError:
            raise NcnnFormatError(f"{at}: bad input/output counts {tok[2]!r} {tok[3]!r}") from None
        if n_in < 0 or n_out < 0 or len(tok) < 4 + n_in + n_out:
            raise NcnnFormatError(f"{at}: {name}: fewer blob names than {n_in} inputs + {n_out} outputs")
        ins = tuple(tok[4 : 4 + n_in])
        outs = tuple(tok[4 + n_in : 4 + n_in + n_out])
        params: dict[int, ParamValue] = {}
        for kv in tok[4 + n_in + n_out :]:
            k, sep, v = kv.partition("=")
            if not sep:
                raise NcnnFormatError(f"{at}: {name}: parameter {kv!r} is not 'id=value'")
            try:
                key = int(k)
            except ValueError:
                raise NcnnFormatError(f"{at}: {name}: parameter id {k!r} is not an integer") from None
            if key <= -23300:
                parts = v.split(",")
                try:
                    n = int(parts[0])
                except ValueError:
                    raise NcnnFormatError(f"{at}: {name}: array parameter {kv!r} must start with its length") from None
                if n != len(parts) - 1:
                    raise NcnnFormatError(f"{at}: {name}: array parameter {kv!r} says {n} values, has {len(parts) - 1}")
                params[-key - 23300] = [_value(p, f"{at}: {name}") for p in parts[1:]]
            else:
                params[key] = _value(v, f"{at}: {name}")
        if name in names:
            raise NcnnFormatError(f"{at}: duplicate layer name {name!r}")
        names.add(name)
        layers.append(Layer(typ, name, ins, outs, params))
    return layers, blob_count


class _Reader:
    def __init__(self, data: bytes, where: str):
        self.data, self.pos, self.where = memoryview(data), 0, where

    def take(self, n: int, what: str) -> memoryview:
        if self.pos + n > len(self.data):
            raise NcnnFormatError(f"{self.where}: truncated: {what} needs {n} bytes at offset {self.pos}, "
                                  f"{len(self.data) - self.pos} left")
        out = self.data[self.pos : self.pos + n]
        self.pos += n
        return out

    def raw(self, n: int, what: str) -> np.ndarray:
        return np.frombuffer(self.take(4 * n, what), dtype="<f4").astype(np.float32)

    def tagged(self, n: int, what: str) -> np.ndarray:
        tag = int.from_bytes(self.take(4, what + " tag"), "little")
        if tag == TAG_FP16:
            nbytes = 2 * n
            buf = self.take(nbytes + (-nbytes) % 4, what)
            return np.frombuffer(buf[:nbytes], dtype="<f2").astype(np.float32)
        if tag in (TAG_FP32, TAG_FP32_SCALED):
            return self.raw(n, what)
        if tag == TAG_INT8:
            raise NcnnFormatError(f"{self.where}: {what}: int8-quantised weights are not supported")
        table = self.raw(256, what + " quantisation table")
        idx = np.frombuffer(self.take(n + (-n) % 4, what)[:n], dtype=np.uint8)
        return table[idx]


def read_bin(layers: list[Layer], source: str | Path | bytes) -> dict[str, dict[str, np.ndarray]]:
    """Read a ``.bin`` for the given layers (see the module docstring for the layout).

    Args:
        layers: From :func:`parse_param`.
        source: The ``.bin`` path or its bytes.

    Returns:
        Layer name -> ``{"weight": float32 (weight_data_size,), "bias":
        float32 (num_output,)}`` (bias only when ``bias_term``) for
        conv-like / InnerProduct layers, ``{"slope": float32 (num_slope,)}``
        for PReLU.

    Raises:
        NcnnFormatError: an unknown layer type (its data size is unknown),
            int8 weights, a truncated file or trailing bytes.
    """
    if isinstance(source, (bytes, bytearray, memoryview)):
        data, where = bytes(source), "<bin>"
    else:
        data, where = Path(source).read_bytes(), str(source)
    r = _Reader(data, where)
    out: dict[str, dict[str, np.ndarray]] = {}
    for l in layers:
        if l.type in WEIGHTLESS_TYPES:
            continue
        if l.type not in WEIGHTED_TYPES:
            raise NcnnFormatError(f"{where}: layer {l.name}: type {l.type!r} is not supported (its .bin data size is unknown)")
        if l.type == "PReLU":
            out[l.name] = {"slope": r.raw(int(l.get(0, 0)), f"{l.name} slope")}
            continue
        if l.type == "InnerProduct":
            n_out, bias, size = int(l.get(0)), int(l.get(1)), int(l.get(2))
        else:
            n_out, bias, size = int(l.get(0)), int(l.get(5)), int(l.get(6))
            if int(l.get(8, 0)):
                raise NcnnFormatError(f"{where}: layer {l.name}: int8 scale terms are not supported")
        if n_out <= 0 or size <= 0 or size % n_out:
            raise NcnnFormatError(f"{where}: layer {l.name}: weight_data_size {size} is not a multiple of num_output {n_out}")
        d = {"weight": r.tagged(size, f"{l.name} weight")}
        if bias:
            d["bias"] = r.raw(n_out, f"{l.name} bias")
        out[l.name] = d
    if r.pos != len(data):
        raise NcnnFormatError(f"{where}: {len(data) - r.pos} bytes left after the last weighted layer (wrong .param for this .bin?)")
    return out


def load_ncnn(param: str | Path, bin: str | Path) -> NcnnNet:
    """Parse a ``.param`` and read its ``.bin``.

    Returns:
        :class:`NcnnNet` with every weighted layer's arrays.

    Raises:
        NcnnFormatError: see :func:`parse_param` and :func:`read_bin`.
        OSError: a file cannot be read.
    """
    layers, blobs = parse_param(Path(param))
    return NcnnNet(layers, blobs, read_bin(layers, Path(bin)))


# ---------------------------------------------------------------------------
# conversion to PyTorch key names


@dataclass
class Conversion:
    """A converted model.

    Attributes:
        state_dict: PyTorch key -> float32 tensor, as spandrel's architecture expects.
        family: ``"ESRGAN"``, ``"Compact"`` or ``"RealCUGAN"`` (spandrel's architecture id).
        scale: The network's own scale (what spandrel detects).
        post_resize: Final bicubic resize the ncnn graph applies after the
            network (``realesr-animevideov3`` x2/x3: ``0.5`` / ``0.75`` of the
            x4 output), else ``None``.
        pro: RealCUGAN "pro" weights (input mapped to ``0.7 x + 0.15`` and back).
    """

    state_dict: dict
    family: str
    scale: int
    post_resize: float | None = None
    pro: bool = False


def _tensor(a: np.ndarray, shape: tuple[int, ...]):
    import torch

    if a.size != math.prod(shape):
        raise NcnnFormatError(f"cannot reshape {a.size} values to {shape}")
    return torch.from_numpy(np.ascontiguousarray(a.reshape(shape), dtype=np.float32)).clone()


def _conv_tensors(net: NcnnNet, l: Layer, key: str, *, bias: bool = True) -> dict:
    """PyTorch ``key.weight`` (+ ``key.bias``) of an ncnn Convolution/Deconvolution/InnerProduct layer."""
    w = net.weights[l.name]
    if l.type == "InnerProduct":  # a 1x1 convolution on a pooled vector
        o = int(l.get(0))
        shape: tuple[int, ...] = (o, w["weight"].size // o, 1, 1)
        t = _tensor(w["weight"], shape)
    else:
        o, kw = int(l.get(0)), int(l.get(1))
        kh = int(l.get(11, kw))
        i = w["weight"].size // (o * kh * kw)
        if i * o * kh * kw != w["weight"].size:
            raise NcnnFormatError(f"{l.name}: weight_data_size {w['weight'].size} does not fit {o} outputs of {kh}x{kw}")
        t = _tensor(w["weight"], (o, i, kh, kw))
        if l.type == "Deconvolution":
            if int(l.get(7, 1)) != 1:
                raise NcnnFormatError(f"{l.name}: grouped deconvolution is not supported")
            t = t.transpose(0, 1).contiguous()  # ncnn [out][in] -> PyTorch ConvTranspose2d [in][out]
        elif l.type in ("ConvolutionDepthWise", "DeconvolutionDepthWise"):
            raise NcnnFormatError(f"{l.name}: {l.type} is not used by the supported families")
    out = {f"{key}.weight": t}
    if bias:
        if "bias" not in w:
            raise NcnnFormatError(f"{l.name}: has no bias; {key}.bias expected")
        out[f"{key}.bias"] = _tensor(w["bias"], (t.shape[1] if l.type == "Deconvolution" else t.shape[0],))
    elif "bias" in w:
        raise NcnnFormatError(f"{l.name}: has a bias; {key} has none")
    return out


def _act(l: Layer) -> tuple[int, tuple]:
    return int(l.get(9, 0)), tuple(round(float(v), 6) for v in (l.get(10, []) or []))


def _expect(cond: bool, msg: str) -> None:
    if not cond:
        raise NcnnFormatError(msg)


def detect_family(net: NcnnNet) -> str:
    """Guess the architecture family of a parsed ncnn graph.

    Returns:
        ``"ESRGAN"`` (RRDBNet: Concat + Eltwise residual scaling), ``"Compact"``
        (SRVGGNetCompact: PReLU + PixelShuffle) or ``"RealCUGAN"`` (U-Nets with
        squeeze-excitation InnerProducts and Deconvolutions).

    Raises:
        NcnnFormatError: none of them.
    """
    types = Counter(l.type for l in net.layers)
    if types["InnerProduct"] and types["Deconvolution"] and types["Pooling"]:
        return "RealCUGAN"
    if types["PReLU"] and types["PixelShuffle"] and not types["Concat"]:
        return "Compact"
    if types["Concat"] and types["Eltwise"] and types["Convolution"]:
        return "ESRGAN"
    raise NcnnFormatError(f"unrecognised ncnn graph (layer types {dict(types)})")


def convert_rrdbnet(net: NcnnNet) -> Conversion:
    """RRDBNet (ESRGAN, Real-ESRGAN x4plus/anime, RealSR) to BasicSR key names.

    Expects, in ``.param`` order: ``conv_first``; per block 3 residual dense
    blocks of 5 convolutions (``conv1``-``conv4`` LeakyReLU 0.2, ``conv5``
    linear; Eltwise ``0.2 x + skip``); ``conv_body``; per x2 step a nearest
    Interp and a LeakyReLU convolution (``conv_up1``, ``conv_up2``);
    ``conv_hr`` (LeakyReLU) and ``conv_last``.

    Returns:
        :class:`Conversion` with keys ``conv_first.*``,
        ``body.{b}.rdb{1..3}.conv{1..5}.*``, ``conv_body.*``, ``conv_up{1,2}.*``,
        ``conv_hr.*``, ``conv_last.*`` (float32; weights ``(O, I, 3, 3)``).

    Raises:
        NcnnFormatError: the graph does not have this structure.
    """
    convs = net.of_type("Convolution")
    _expect(len(net.weighted) == len(convs), "RRDBNet: only Convolution layers may carry weights")
    interps = net.of_type("Interp")
    _expect(all(int(l.get(0)) == 1 and float(l.get(1)) == 2.0 and float(l.get(2)) == 2.0 for l in interps),
            "RRDBNet: upsampling must be nearest x2 Interp layers")
    n_up = len(interps)
    _expect(n_up in (1, 2, 3), f"RRDBNet: {n_up} upsampling steps (1-3 supported; pixel-unshuffle x1/x2 models are not)")
    n_blocks, rest = divmod(len(convs) - 4 - n_up, 15)
    _expect(rest == 0 and n_blocks > 0, f"RRDBNet: {len(convs)} convolutions do not make whole RRDB blocks")
    for l in convs:
        _expect(int(l.get(1)) == 3 and int(l.get(3, 1)) == 1 and int(l.get(4, 0)) == 1, f"{l.name}: expected 3x3 stride-1 pad-1")
    for l in net.of_type("Eltwise"):
        _expect([round(float(c), 6) for c in l.get(1, [])] == [0.2, 1.0], f"{l.name}: expected residual scaling 0.2")
    leaky = (2, (0.2,))
    sd: dict = {}
    it = iter(convs)
    l = next(it)
    _expect(_act(l)[0] == 0, f"{l.name}: conv_first must be linear")
    sd.update(_conv_tensors(net, l, "conv_first"))
    for b in range(n_blocks):
        for r in range(1, 4):
            for c in range(1, 6):
                l = next(it)
                _expect(_act(l) == (leaky if c < 5 else (0, ())), f"{l.name}: activation does not match rdb conv{c}")
                sd.update(_conv_tensors(net, l, f"body.{b}.rdb{r}.conv{c}"))
    names = ["conv_body"] + [f"conv_up{i}" for i in range(1, n_up + 1)] + ["conv_hr", "conv_last"]
    for key in names:
        l = next(it)
        want = (0, ()) if key in ("conv_body", "conv_last") else leaky
        _expect(_act(l) == want, f"{l.name}: activation does not match {key}")
        sd.update(_conv_tensors(net, l, key))
    return Conversion(sd, "ESRGAN", 2**n_up)


def convert_compact(net: NcnnNet) -> Conversion:
    """SRVGGNetCompact (Real-ESRGAN ``realesr-animevideov3`` / general) to spandrel's ``body.N`` keys.

    Expects: Convolution, PReLU, (Convolution, PReLU) x num_conv, Convolution,
    PixelShuffle r, plus the nearest-upsampled input added; optionally a
    final bicubic Interp (reported as :attr:`Conversion.post_resize`).

    Returns:
        :class:`Conversion` with ``body.{2k}.weight/bias`` (convolutions,
        ``(O, I, 3, 3)``) and ``body.{2k+1}.weight`` (PReLU slopes, ``(C,)``).

    Raises:
        NcnnFormatError: the graph does not have this structure.
    """
    seq = net.weighted
    _expect(len(seq) >= 3 and len(seq) % 2 == 1, "Compact: expected conv/PReLU pairs and a last conv")
    sd: dict = {}
    for i, l in enumerate(seq):
        want = "Convolution" if i % 2 == 0 else "PReLU"
        _expect(l.type == want, f"{l.name}: expected {want} at body.{i}")
        if want == "PReLU":
            sd[f"body.{i}.weight"] = _tensor(net.weights[l.name]["slope"], (int(l.get(0)),))
        else:
            _expect(_act(l)[0] == 0, f"{l.name}: expected a linear convolution (PReLU follows)")
            sd.update(_conv_tensors(net, l, f"body.{i}"))
    ps = net.of_type("PixelShuffle")
    _expect(len(ps) == 1, "Compact: expected one PixelShuffle")
    r = int(ps[0].get(0))
    post = None
    interps = net.of_type("Interp")
    bicubic = [l for l in interps if int(l.get(0)) == 3]
    _expect(len(bicubic) <= 1 and all(int(l.get(0)) in (1, 3) for l in interps), "Compact: unexpected Interp layers")
    if bicubic:
        post = float(bicubic[0].get(1))
        _expect(float(bicubic[0].get(2)) == post and bicubic[0].outputs[0] == net.layers[-1].outputs[0],
                "Compact: the bicubic resize must be the last layer, same factor on both axes")
    return Conversion(sd, "Compact", r, post_resize=post)


def _realcugan_keys(scale: int) -> list[str]:
    """RealCUGAN module names in PyTorch registration order (= the ncnn weighted-layer order)."""
    def unetconv(p: str, se: bool) -> list[str]:
        return [f"{p}.conv.0", f"{p}.conv.2"] + ([f"{p}.seblock.conv1", f"{p}.seblock.conv2"] if se else [])

    u1 = unetconv("unet1.conv1", False) + ["unet1.conv1_down"] + unetconv("unet1.conv2", True) + [
        "unet1.conv2_up", "unet1.conv3", "unet1.conv_bottom"]
    u2 = (unetconv("unet2.conv1", False) + ["unet2.conv1_down"] + unetconv("unet2.conv2", True) + ["unet2.conv2_down"]
          + unetconv("unet2.conv3", True) + ["unet2.conv3_up"] + unetconv("unet2.conv4", True)
          + ["unet2.conv4_up", "unet2.conv5", "unet2.conv_bottom"])
    return u1 + u2 + (["conv_final"] if scale == 4 else [])


def convert_realcugan(net: NcnnNet, *, pro: bool = False) -> Conversion:
    """Real-CUGAN (UpCunet2x / 3x / 4x, se or pro) to spandrel's RealCUGAN keys.

    The weighted layers follow PyTorch's registration order
    (``unet1.conv1.conv.0`` ... ``unet2.conv_bottom`` [, ``conv_final``]);
    squeeze-excitation InnerProducts become 1x1 convolutions and
    Deconvolution weights are transposed to ConvTranspose2d's ``(I, O, kh, kw)``.
    The scale follows from the graph: a PixelShuffle means x4, a stride-3
    Deconvolution x3, else x2.  ``pro`` cannot be told from the graph (pro and
    se files differ only in their weights): the caller says it, and the state
    dict then holds spandrel's ``pro`` marker buffer.

    Returns:
        :class:`Conversion` (``family="RealCUGAN"``).

    Raises:
        NcnnFormatError: the graph does not have this structure.
    """
    deconvs = net.of_type("Deconvolution")
    if net.of_type("PixelShuffle"):
        scale = 4
    elif any(int(l.get(3, 1)) == 3 for l in deconvs):
        scale = 3
    else:
        scale = 2
    keys = _realcugan_keys(scale)
    seq = net.weighted
    _expect(len(seq) == len(keys), f"RealCUGAN x{scale}: {len(seq)} weighted layers, expected {len(keys)}")
    sd: dict = {}
    for l, key in zip(seq, keys):
        is_up = key.endswith("_up") or (key == "unet1.conv_bottom")
        want = "Deconvolution" if is_up else ("InnerProduct" if ".seblock." in key else "Convolution")
        _expect(l.type == want, f"{l.name}: {l.type} where {key} ({want}) was expected")
        sd.update(_conv_tensors(net, l, key))
    if pro:
        import torch

        sd["pro"] = torch.zeros(1)
    return Conversion(sd, "RealCUGAN", scale, pro=pro)


def to_state_dict(net: NcnnNet, family: str | None = None, *, pro: bool = False) -> Conversion:
    """Convert a parsed ncnn model to a spandrel state dict.

    Args:
        net: From :func:`load_ncnn`.
        family: ``"ESRGAN"``, ``"Compact"`` or ``"RealCUGAN"``; ``None``
            detects it (:func:`detect_family`).
        pro: RealCUGAN pro weights (see :func:`convert_realcugan`).

    Returns:
        :class:`Conversion`.

    Raises:
        NcnnFormatError: unknown family or a graph that does not match it.
    """
    family = family or detect_family(net)
    if family == "ESRGAN":
        return convert_rrdbnet(net)
    if family == "Compact":
        return convert_compact(net)
    if family == "RealCUGAN":
        return convert_realcugan(net, pro=pro)
    raise NcnnFormatError(f"no converter for family {family!r}")
