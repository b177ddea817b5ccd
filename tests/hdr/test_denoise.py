import numpy as np
import pytest

from ..golden import shared_path

pyoidn = pytest.importorskip("pyoidn", reason="pyoidn not installed (pip install -e '.[denoise]')")


def _log_psnr(a, b, ref):
    lg = lambda x: np.log(np.maximum(x, 0) + 1e-3)  # noqa: E731
    span = lg(ref).max() - lg(ref).min()
    return 10 * np.log10(span**2 / np.mean((lg(a) - lg(b)) ** 2))


def test_oidn_improves_noisy_linear_hdr():
    from restore.hdr.denoise import denoise_oidn
    from restore.io import read

    img = read(shared_path("data", "hdr_images", "MtTamWest.exr")).color[:256, :256].copy()
    rng = np.random.default_rng(0)
    noisy = (rng.poisson(np.maximum(img, 0) * 200) / 200 + rng.normal(0, 0.01, img.shape)).astype(np.float32)
    den = denoise_oidn(noisy)
    assert den.shape == img.shape and np.isfinite(den).all()
    assert _log_psnr(den, img, img) > _log_psnr(noisy, img, img) + 6.0  # measured +11.1 dB


def test_denoise_step_in_a_pipeline():
    from restore.image import LINEAR_REC709, Image, Metadata
    from restore.pipeline.hdr_stages import DenoiseStage
    from restore.pipeline.schema import DenoiseOptions
    from restore.pipeline.stages import Context

    rng = np.random.default_rng(1)
    x = (0.5 + 0.05 * rng.standard_normal((32, 32, 3))).astype(np.float32)
    st = DenoiseStage(DenoiseOptions())
    st.prepare()
    out = st(Image(x, LINEAR_REC709, Metadata()), Context())
    assert out.pixels.std() < x.std()
