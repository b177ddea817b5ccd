import atexit
import os
import shutil
import tempfile

import numpy as np
import pytest
import torch

torch.set_num_threads(max(1, min(2, os.cpu_count() or 1)))

# The suite never reads or writes the user's cache (~/.cache/restore: measured thread counts and memory
# curves that real runs reuse, converted weights): one fresh cache per session, which subprocesses inherit.
TEST_CACHE = tempfile.mkdtemp(prefix="restore-test-cache-")
os.environ["XDG_CACHE_HOME"] = TEST_CACHE
atexit.register(shutil.rmtree, TEST_CACHE, ignore_errors=True)


@pytest.fixture
def rng():
    return np.random.default_rng(0)


@pytest.fixture
def photo(rng):
    """A small smooth RGB image (float32, sRGB [0, 1]) with some texture."""
    y, x = np.mgrid[0:40, 0:48].astype(np.float32)
    base = np.stack([0.5 + 0.4 * np.sin(x / 7), 0.5 + 0.4 * np.cos(y / 5), (x + y) / 88], axis=-1)
    return np.clip(base + 0.05 * rng.standard_normal(base.shape), 0, 1).astype(np.float32)


@pytest.fixture
def weather_kinds_seen(monkeypatch):
    """Record which ``synth.DEGRADATIONS`` kinds get drawn (a list, in call order); outputs unchanged."""
    from data_tools import synth

    seen = []
    for kind, fn in list(synth.DEGRADATIONS.items()):
        def rec(img, rng, _k=kind, _f=fn, **kw):
            seen.append(_k)
            return _f(img, rng, **kw)
        monkeypatch.setitem(synth.DEGRADATIONS, kind, rec)
    return seen
