"""restore.threads: the thread count is measured, the fastest kept and cached; the model step uses it."""

from __future__ import annotations

import time

import numpy as np
import pytest
import torch

from restore import threads
from restore.pipeline import load_pipeline
from restore.image import Image
from restore.pipeline.stages import Context
from tests.test_compile import tiny_compact


def test_candidates_are_sane():
    c = threads.candidate_counts()
    assert c == sorted(set(c)) and c[0] >= 1 and c[-1] <= threads._usable_cpus()


def test_fastest_count_is_kept_and_cached(tmp_path, monkeypatch):
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    monkeypatch.setattr(threads, "candidate_counts", lambda: [1, 2])
    calls = []

    def fn():  # pretend one thread is faster than two
        calls.append(torch.get_num_threads())
        time.sleep(0.002 if torch.get_num_threads() == 1 else 0.02)

    before = torch.get_num_threads()
    n, note = threads.threads_for("test/key", fn)
    assert n == 1 and "measured now" in note and set(calls) == {1, 2}
    assert torch.get_num_threads() == before  # restored
    calls.clear()
    n2, note2 = threads.threads_for("test/key", fn)
    assert n2 == 1 and not calls and "measured before" in note2
    (tmp_path / "restore" / "threads.json").write_text("{not json")  # a broken cache is re-measured
    assert threads.threads_for("test/key", fn)[0] == 1 and calls


def test_model_step_sets_and_restores_threads(tmp_path, monkeypatch):
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    w = tiny_compact(tmp_path / "tiny.safetensors")
    img = np.random.default_rng(0).random((24, 24, 3)).astype(np.float32)
    seen = []
    from restore import tiling

    real = tiling.run_tiled

    def spy(*a, **k):
        seen.append(torch.get_num_threads())
        return real(*a, **k)

    monkeypatch.setattr(tiling, "run_tiled", spy)
    before = torch.get_num_threads()
    load_pipeline(f"version: 1\nname: t\nsteps:\n  - model: {{name: {w}, tile: 0, threads: 1}}\n")(img)
    assert seen == [1] and torch.get_num_threads() == before
    monkeypatch.setattr(threads, "candidate_counts", lambda: [1, 2])
    pipe = load_pipeline(f"version: 1\nname: t\nsteps:\n  - model: {{name: {w}, tile: 0}}\n")
    ctx = Context()
    pipe.process(Image(img), ctx)
    assert any(n.startswith("threads: ") and "measured now" in n for n in ctx.notes), ctx.notes


@pytest.mark.parametrize("bad", [0, -1, "many", True])
def test_bad_thread_option_is_refused(tmp_path, bad):
    from restore.errors import RestoreError

    w = tiny_compact(tmp_path / "tiny.safetensors")
    with pytest.raises((RestoreError, ValueError), match="threads"):
        load_pipeline(f"version: 1\nname: t\nsteps:\n  - model: {{name: {w}, threads: {bad}}}\n")


def _fake_cpuinfo(family: int, flags: str) -> str:
    one = (f"processor\t: {{n}}\nvendor_id\t: AuthenticAMD\ncpu family\t: {family}\nmodel\t\t: 2\n"
           f"model name\t: AMD EPYC\nflags\t\t: {flags}\n")
    return one.format(n=0) + "\n" + one.format(n=1) + "\n"


def test_machine_key_tells_apart_cpus_with_one_name(monkeypatch, tmp_path):
    """Zen 4 and Zen 5 VMs both say ``AMD EPYC``: measured choices must not cross between them,
    nor between a guest that sees AVX512-BF16 and one that does not."""
    from pathlib import Path

    real_read = Path.read_text
    texts = {}

    def fake_read(self, *a, **k):
        return texts["cpuinfo"] if str(self) == "/proc/cpuinfo" else real_read(self, *a, **k)

    monkeypatch.setattr(Path, "read_text", fake_read)
    keys = []
    for fam, flags in [(25, "fpu avx avx2 fma avx512f avx512_bf16"), (26, "fpu avx avx2 fma avx512f avx512_bf16"),
                       (25, "fpu avx avx2 fma")]:
        texts["cpuinfo"] = _fake_cpuinfo(fam, flags)
        keys.append(threads.machine_key())
        assert threads._cpu_name() == "AMD EPYC"
    assert len(set(keys)) == 3, keys
    assert threads.cpu_flags() == ["avx2", "fma"]
    from restore.tiling import cpu_has_fast_bf16

    assert not cpu_has_fast_bf16()
    texts["cpuinfo"] = _fake_cpuinfo(25, "fpu avx2 avx512_bf16")
    assert cpu_has_fast_bf16()
