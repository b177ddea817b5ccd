"""The batch engine's logic, without processes, clocks or sleeps (issue 16): the one loop over a scripted
executor (journal states, interrupts, crashes, out-of-order completions), planning decisions, and the watch
daemon's pure functions (settling, capture order, bracket completion)."""

from __future__ import annotations

import os
from datetime import datetime
from pathlib import Path

import cv2
import numpy as np
import pytest

from restore.engine import Executor, FileResult, Item, run_batch
from restore.engine.loop import decide, settled_result
from restore.hdr.group import FrameInfo
from restore.io import TMP_MARK
from restore.journal import Journal
from restore.pipeline import load_pipeline
from restore.watch import capture_order, complete_brackets, settled

FAST = {"version": 1, "name": "fast", "steps": [{"resize": {"scale": 0.5}}, {"write": {"path": "{stem}.png"}}]}


class Scripted(Executor):
    """Returns what the script says for each file name: ``done`` (writes the outputs), ``fail``, ``crash``
    (the worker died: a failed result), ``interrupt`` (a signal arrives while it runs).  ``order``:
    ``"reverse"`` completes the items in flight last-in first-out."""

    def __init__(self, script: dict[str, str], capacity: int = 1, order: str = "fifo"):
        super().__init__()
        self.script, self.capacity, self.order = script, capacity, order
        self.submitted: list[str] = []

    def submit(self, item, *, out_dir, overwrite=False, probe=False, probe_only=False, prefetch=None):
        super().submit(item, out_dir=out_dir, overwrite=overwrite)
        self.submitted.append(item.key.name)
        for o in item.outputs:  # a worker's temporary file, as an atomic write leaves it until the rename
            Path(o).parent.mkdir(parents=True, exist_ok=True)
            (Path(o).parent / f".{TMP_MARK}0badc0de-{Path(o).name}").write_bytes(b"partial")

    def wait(self, timeout=None, tile_progress=None):
        if not self._pending:
            return []
        k = -1 if self.order == "reverse" else 0
        item, _ = self._pending[k]
        what = self.script.get(item.key.name, "done")
        if what == "interrupt":
            raise KeyboardInterrupt
        self._pending.pop(k)
        for o in item.outputs:
            tmp = Path(o).parent / f".{TMP_MARK}0badc0de-{Path(o).name}"
            if what == "done":
                tmp.replace(o)
            else:  # a failed item, or a crashed worker: the executor removes what it left (its contract)
                tmp.unlink()
        if what == "done":
            return [(item, FileResult(item.key, "done", list(item.outputs)))]
        if what == "crash":
            return [(item, FileResult(item.key, "failed", error=f"{item.key}: the worker process crashed (signal 9)"))]
        return [(item, FileResult(item.key, "failed", error=f"{item.key}: bad"))]


def inputs(tmp_path: Path, names) -> list[Path]:
    d = tmp_path / "in"
    d.mkdir(exist_ok=True)
    out = []
    for i, n in enumerate(names):
        p = d / n
        cv2.imwrite(str(p), np.full((4, 4, 3), i * 20, np.uint8))
        out.append(p)
    return out


def states(out: Path) -> dict[str, tuple[str, int]]:
    with Journal(out / ".restore-journal.sqlite", exclusive=False) as j:
        return {Path(e.path).name: (e.state, e.attempts) for e in j.entries()}


def test_the_loop_records_every_outcome_in_the_journal(tmp_path):
    files = inputs(tmp_path, ["a.png", "b.png", "c.png", "d.png"])
    out = tmp_path / "out"
    ex = Scripted({"b.png": "fail", "c.png": "crash"})
    seen = []
    report = run_batch(load_pipeline(FAST), files, out, journal=True, executor=ex, on_result=lambda r: seen.append((r.input.name, r.status)))
    assert seen == [("a.png", "done"), ("b.png", "failed"), ("c.png", "failed"), ("d.png", "done")]
    assert states(out) == {"a.png": ("done", 1), "b.png": ("failed", 1), "c.png": ("failed", 1), "d.png": ("done", 1)}
    assert sorted(p.name for p in out.iterdir() if not p.name.startswith(".")) == ["a.png", "d.png"]
    assert not [p for p in out.iterdir() if TMP_MARK in p.name]  # the failed items' temporary files are gone
    # a rerun: done items skipped, failed ones reported without a retry ...
    ex2 = Scripted({})
    report = run_batch(load_pipeline(FAST), files, out, journal=True, executor=ex2)
    assert ex2.submitted == [] and report.count("skipped") == 2 and report.count("failed") == 2
    assert all("not retried: use --retry-failed" in r.error for r in report.failed)
    # ... unless asked
    ex3 = Scripted({})
    report = run_batch(load_pipeline(FAST), files, out, journal=True, executor=ex3, retry_failed=True)
    assert ex3.submitted == ["b.png", "c.png"] and report.count("done") == 2
    assert states(out)["b.png"] == ("done", 2)


def test_an_interrupt_abandons_the_items_in_flight(tmp_path):
    files = inputs(tmp_path, ["a.png", "b.png", "c.png", "d.png"])
    out = tmp_path / "out"
    ex = Scripted({"c.png": "interrupt"}, capacity=2)
    report = run_batch(load_pipeline(FAST), files, out, journal=True, executor=ex)
    assert report.interrupted and [r.input.name for r in report.results] == ["a.png", "b.png"]
    assert ex.submitted == ["a.png", "b.png", "c.png", "d.png"]  # two in flight when the signal came
    st = states(out)
    assert st["a.png"] == ("done", 1) and st["b.png"] == ("done", 1)
    assert st["c.png"] == ("pending", 0) and st["d.png"] == ("pending", 0)  # back to do, the attempt not counted
    assert not [p for p in out.iterdir() if TMP_MARK in p.name]
    ex2 = Scripted({})
    run_batch(load_pipeline(FAST), files, out, journal=True, executor=ex2)
    assert ex2.submitted == ["c.png", "d.png"] and states(out)["c.png"] == ("done", 1)


def test_a_crash_of_the_driver_is_resumed_from_the_journal(tmp_path):
    """The driver died with c.png running (its row says so): the rerun removes c's temporary file and runs it
    again; b.png was renamed into place after its attempt began, so it counts as done without a rerun."""
    files = inputs(tmp_path, ["a.png", "b.png", "c.png"])
    out = tmp_path / "out"
    run_batch(load_pipeline(FAST), files[:1], out, journal=True, executor=Scripted({}))
    with Journal.for_output(out) as j:
        j.begin([files[1]])
        j.begin([files[2]])
    (out / "b.png").write_bytes(b"complete")  # b's output landed after its attempt began
    stale = out / f".{TMP_MARK}deadbeef-c.png"
    stale.write_bytes(b"partial")
    ex = Scripted({})
    report = run_batch(load_pipeline(FAST), files, out, journal=True, executor=ex)
    assert ex.submitted == ["c.png"] and not stale.exists()
    assert [(r.input.name, r.status) for r in report.results] == [("a.png", "skipped"), ("b.png", "skipped"), ("c.png", "done")]
    assert states(out)["c.png"] == ("done", 2) and states(out)["b.png"][0] == "done"


def test_results_arriving_out_of_order_land_on_their_own_items(tmp_path):
    files = inputs(tmp_path, [f"f{i}.png" for i in range(7)])
    out = tmp_path / "out"
    ex = Scripted({"f2.png": "fail"}, capacity=3, order="reverse")
    report = run_batch(load_pipeline(FAST), files, out, journal=True, executor=ex)
    assert sorted(r.input.name for r in report.results) == [f"f{i}.png" for i in range(7)]
    assert [r.input.name for r in report.results] != [f"f{i}.png" for i in range(7)]  # really out of order
    st = states(out)
    assert st.pop("f2.png") == ("failed", 1) and all(v == ("done", 1) for v in st.values())
    with Journal(out / ".restore-journal.sqlite", exclusive=False) as j:
        for e in j.entries("done"):
            assert [Path(o).name for o in e.outputs] == [Path(e.path).name]


def test_decisions_before_anything_runs(tmp_path):
    files = inputs(tmp_path, ["x.png", "y.png"])
    out = tmp_path / "out"
    a = Item(0, [files[0]], outputs=[out / "x.png"])
    b = Item(1, [files[1]], outputs=[out / "x.png"])  # b plans a's output
    with Journal.for_output(out) as j:
        assert decide(a, j, {}, overwrite=False, retry_failed=False).action == "process"
        j.begin([files[0]])
        (out / "x.png").write_bytes(b"a")
        j.finish(files[0], [out / "x.png"])
        owners = j.output_owners()
        assert decide(a, j, owners, overwrite=False, retry_failed=False).action == "skip"
        p = decide(b, j, owners, overwrite=False, retry_failed=False)
        assert p.action == "refused" and "already the output of" in p.reason and str(files[0].resolve()) in p.reason
        assert decide(b, j, owners, overwrite=True, retry_failed=False).action == "refused"  # --overwrite never takes it over
        os.remove(files[0])  # the owner is gone: its output may be replaced
        assert decide(b, j, owners, overwrite=False, retry_failed=False).action == "process"
    assert settled_result(files[1], p).status == "failed"


@pytest.mark.parametrize(("since", "not_before", "now", "settle", "taken"), [
    (0.0, 0.0, 1.9, 2.0, False),  # still settling
    (0.0, 0.0, 2.0, 2.0, True),
    (0.0, 5.0, 3.0, 2.0, False),  # settled, but a retry backoff is pending
    (0.0, 5.0, 5.0, 2.0, True),
    (10.0, 0.0, 11.0, 0.0, True),  # --settle 0
])
def test_settling(since, not_before, now, settle, taken):
    assert settled(since, not_before, now, settle) is taken


def frame(name, t, folder="a", when=None, size=(8, 8)):
    return FrameInfo(Path(folder) / name, *size, t, None, None, when, None)


def test_capture_order_uses_capture_times_only_when_every_frame_has_one():
    a, b, c = frame("IMG_10.png", 1.0, when=datetime(2026, 1, 1, 0, 0, 1)), frame("IMG_9.png", 1.0, when=datetime(2026, 1, 1, 0, 0, 2)), frame("IMG_11.png", 1.0, when=datetime(2026, 1, 1, 0, 0, 0))
    assert [i.path.name for i in capture_order([a, b, c])] == ["IMG_11.png", "IMG_10.png", "IMG_9.png"]
    c.capture_time = None
    assert [i.path.name for i in capture_order([a, b, c])] == ["IMG_9.png", "IMG_10.png", "IMG_11.png"]  # natural names


def test_bracket_completion_waits_for_the_last_bracket_and_flushes_what_is_left():
    pipe = load_pipeline({"version": 1, "input": {"group": {"by": "exposure-sequence"}}, "steps": [{"fuse": {}}, {"write": {"path": "{group}.png"}}]})

    def group_fn(infos):
        groups, failures, _ = pipe.group_infos(infos)
        return groups, failures

    seq = [frame(f"s{i}.png", 0.01 * 2 ** (i % 3)) for i in range(5)]  # 3 + 2 frames: the second may still grow
    groups, failed = complete_brackets(seq, group_fn, "exposure-sequence", None, flush=False)
    assert [[i.path.name for i in g] for g in groups] == [["s0.png", "s1.png", "s2.png"]] and not failed
    groups, failed = complete_brackets(seq[3:], group_fn, "exposure-sequence", None, flush=True)
    assert [[i.path.name for i in g] for g in groups] == [["s3.png", "s4.png"]] and not failed
    groups, failed = complete_brackets([seq[3]], group_fn, "exposure-sequence", None, flush=True)
    assert not groups and [i.path.name for i in failed[0][0]] == ["s3.png"] and "only 1 frame" in failed[0][1]
    # never across folders
    two = [frame("a1.png", 0.01, "x"), frame("a2.png", 0.02, "x"), frame("b1.png", 0.04, "y"), frame("b2.png", 0.08, "y")]
    groups, _ = complete_brackets(two, group_fn, "exposure-sequence", None, flush=True)
    assert [[i.path.name for i in g] for g in groups] == [["a1.png", "a2.png"], ["b1.png", "b2.png"]]
    # by size: each full chunk is complete; a chunk that cannot merge fails, naming its frames
    sized = [frame(f"z{i}.png", 0.01 * (1 + i % 2)) for i in range(4)] + [frame("z4.png", 0.5, size=(9, 9)), frame("z5.png", 1.0)]
    groups, failed = complete_brackets(sized, group_fn, "size", 2, flush=False)
    assert [[i.path.name for i in g] for g in groups] == [["z0.png", "z1.png"], ["z2.png", "z3.png"]]
    assert [i.path.name for i in failed[0][0]] == ["z4.png", "z5.png"] and "sizes differ" in failed[0][1]
