import struct
import zlib

import numpy as np
import pytest
from PIL import Image as PILImage

import restore
from restore.errors import InputError, OutputError
from restore.image import LINEAR_REC709, Image, Metadata
from restore.io import TMP_MARK, atomic_path, read, write


def _img(px, **meta):
    return Image(np.ascontiguousarray(px, np.float32), meta=Metadata(**meta))


def test_png_16bit_stays_16bit_with_alpha(tmp_path, rng):
    q = rng.integers(0, 65536, (9, 11, 4), dtype=np.uint16)
    src = _img(q / 65535.0, bit_depth=16)
    write(src, tmp_path / "a.png")  # default depth: the source's
    back = read(tmp_path / "a.png")
    assert back.meta.bit_depth == 16 and back.channels == 4
    assert np.array_equal(np.round(back.pixels * 65535).astype(np.uint16), q)


def test_png_8bit_grey(tmp_path, rng):
    q = rng.integers(0, 256, (5, 7, 1), dtype=np.uint8)
    write(_img(q / 255.0, bit_depth=8), tmp_path / "g.png")
    back = read(tmp_path / "g.png")
    assert back.channels == 1 and np.array_equal(np.round(back.pixels * 255).astype(np.uint8), q)


def test_tiff_16bit_rgba_and_float(tmp_path, rng):
    q = rng.integers(0, 65536, (6, 5, 4), dtype=np.uint16)
    write(_img(q / 65535.0, bit_depth=16), tmp_path / "a.tif")
    back = read(tmp_path / "a.tif")
    assert back.meta.bit_depth == 16 and np.array_equal(np.round(back.pixels * 65535).astype(np.uint16), q)
    lin = Image(rng.random((4, 4, 3), dtype=np.float32) * 8, LINEAR_REC709)
    write(lin, tmp_path / "f.tif", bit_depth=32)
    import tifffile

    assert np.array_equal(tifffile.imread(tmp_path / "f.tif"), lin.pixels)


def test_exr_half_and_float_keep_values_above_one(tmp_path, rng):
    px = (rng.random((8, 10, 3)) * 100).astype(np.float32)
    img = Image(px, LINEAR_REC709, Metadata(exposure_time_s=0.01, make="Cam"))
    write(img, tmp_path / "f.exr", dtype="float")
    back = read(tmp_path / "f.exr")
    assert np.array_equal(back.pixels, px) and back.encoding == LINEAR_REC709
    assert back.meta.exposure_time_s == pytest.approx(0.01) and back.meta.make == "Cam"
    write(img, tmp_path / "h.exr", dtype="half")
    assert np.allclose(read(tmp_path / "h.exr").pixels, px, rtol=1e-3)


def test_exr_from_display_image_is_linear(tmp_path):
    img = _img(np.full((2, 2, 3), 0.5))  # sRGB display
    write(img, tmp_path / "x.exr")
    assert read(tmp_path / "x.exr").pixels[0, 0, 0] == pytest.approx(0.214, abs=1e-3)


def test_display_output_refuses_hdr_values(tmp_path):
    img = Image(np.full((2, 2, 3), 3.0, np.float32), LINEAR_REC709)
    with pytest.raises(OutputError, match="tone-mapping"):
        write(img, tmp_path / "x.png")
    assert not list(tmp_path.iterdir())


def test_jpeg_exif_icc_copied_and_orientation_applied(tmp_path, rng):
    arr = rng.integers(0, 256, (8, 12, 3), dtype=np.uint8)
    pil = PILImage.fromarray(arr)
    exif = pil.getexif()
    exif[0x0110] = "TestCam"
    exif[0x0112] = 6  # rotate 90 CW to display
    icc = b"\x00" * 128  # opaque bytes: copied, not interpreted
    pil.save(tmp_path / "in.jpg", exif=exif.tobytes(), icc_profile=icc, quality=100, subsampling=0)
    img = read(tmp_path / "in.jpg")
    assert (img.height, img.width) == (12, 8)  # upright
    assert img.meta.model == "TestCam" and img.meta.icc_profile == icc
    write(img, tmp_path / "out.png")
    write(img, tmp_path / "out.jpg")
    for name in ("out.png", "out.jpg"):
        with PILImage.open(tmp_path / name) as o:
            assert o.getexif().get(0x0110) == "TestCam", name
            assert o.getexif().get(0x0112, 1) == 1, name
            assert o.info.get("icc_profile") == icc, name


def test_truncated_png_is_a_clear_error(tmp_path, rng):
    write(_img(rng.random((32, 32, 3))), tmp_path / "ok.png")
    data = (tmp_path / "ok.png").read_bytes()
    (tmp_path / "cut.png").write_bytes(data[: len(data) // 2])
    with pytest.raises(InputError, match="truncated PNG"):
        read(tmp_path / "cut.png")


def test_garbage_raw_is_a_clear_error(tmp_path):
    (tmp_path / "x.dng").write_bytes(b"this is not a raw file" * 100)
    with pytest.raises(InputError, match=r"x.dng: not an image \(text\)"):
        read(tmp_path / "x.dng")
    (tmp_path / "y.dng").write_bytes(bytes(range(7, 250)) * 10)  # binary, no signature: LibRaw's verdict
    with pytest.raises(InputError, match="y.dng: not a RAW file"):
        read(tmp_path / "y.dng")


def test_decompression_bomb_refused_from_header(tmp_path):
    # A PNG whose IHDR claims 100,000 x 100,000 pixels: refused before decoding.
    def chunk(t, d):
        return struct.pack(">I", len(d)) + t + d + struct.pack(">I", zlib.crc32(t + d) & 0xFFFFFFFF)

    ihdr = struct.pack(">IIBBBBB", 100_000, 100_000, 8, 2, 0, 0, 0)
    data = b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(b"\x00" * 10)) + chunk(b"IEND", b"")
    (tmp_path / "bomb.png").write_bytes(data)
    with pytest.raises(InputError, match="exceeds the limit"):
        read(tmp_path / "bomb.png")


def test_unsupported_and_missing(tmp_path):
    with pytest.raises(InputError, match="file not found"):
        read(tmp_path / "nope.png")
    (tmp_path / "a.xyz").write_bytes(b"1")
    with pytest.raises(InputError, match="unsupported file type"):
        read(tmp_path / "a.xyz")
    with pytest.raises(OutputError, match="unsupported output type"):
        write(_img(np.zeros((2, 2, 3))), tmp_path / "o.gif")


def test_atomic_path_leaves_nothing_on_failure(tmp_path):
    final = tmp_path / "out.png"
    final.write_bytes(b"old")
    with pytest.raises(RuntimeError):
        with atomic_path(final) as tmp:
            tmp.write_bytes(b"partial")
            raise RuntimeError("boom")
    assert final.read_bytes() == b"old"
    assert [p.name for p in tmp_path.iterdir()] == ["out.png"]
    with atomic_path(final) as tmp:
        assert TMP_MARK in tmp.name and tmp.parent == tmp_path
        tmp.write_bytes(b"new")
    assert final.read_bytes() == b"new"


def test_public_api_surface():
    for name in ("read", "write", "load_model", "load_pipeline", "Image", "Encoding", "RawOptions"):
        assert hasattr(restore, name)
