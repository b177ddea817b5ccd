"""The SQLite journal: skip what is done, retry what a crash interrupted, redo what changed; `restore run` resumes with it."""

import os
import sqlite3
import time
from pathlib import Path

import cv2
import numpy as np
import pytest

from restore.io import TMP_MARK
from restore.journal import JOURNAL_NAME, Journal, remove_temp_files
from restore.pipeline import collect_inputs, load_pipeline

FAST = {"version": 1, "name": "fast", "steps": [{"resize": {"scale": 0.5}}, {"write": {"path": "{stem}.png"}}]}


def png(path: Path, seed: int, size=(16, 12)) -> Path:
    rng = np.random.default_rng(seed)
    path.parent.mkdir(parents=True, exist_ok=True)
    cv2.imwrite(str(path), (rng.random((size[1], size[0], 3)) * 255).astype(np.uint8))
    return path


@pytest.fixture
def j(tmp_path):
    jr = Journal.for_output(tmp_path / "out")
    yield jr
    jr.close()


def test_states_skip_retry_and_changed_content(tmp_path, j):
    f = png(tmp_path / "in" / "a.png", 0)
    out = tmp_path / "out" / "a.png"
    assert j.plan([f], [out]).action == "process"
    e = j.begin([f])
    assert e.state == "running" and e.attempts == 1 and len(e.members[0].sha256) == 64
    out.write_bytes(b"x")
    j.finish(f, [out])
    plan = j.plan([f], [out])
    assert plan.action == "skip" and plan.outputs == [out]
    # touched (new mtime) but the same bytes: still done
    os.utime(f, ns=(time.time_ns(), time.time_ns() + 5_000_000_000))
    assert j.plan([f], [out]).action == "skip"
    # an output missing: redo
    out.unlink()
    assert j.plan([f], [out]).action == "process"
    out.write_bytes(b"x")
    # new content: redo, outputs replaced, attempts start again
    png(f, 1)
    plan = j.plan([f], [out])
    assert plan.action == "process" and plan.changed
    assert j.begin([f]).attempts == 1


def test_interrupted_item_is_retried_or_recovered(tmp_path, j):
    f = png(tmp_path / "in" / "a.png", 0)
    out = tmp_path / "out" / "a.png"
    old = tmp_path / "out" / "old.png"
    old.write_bytes(b"old")
    os.utime(old, ns=(1, 1))  # written long before the attempt
    j.begin([f])  # ... and the process died here
    assert j.plan([f], [out]).action == "process"  # nothing written: retried
    assert j.plan([f], [old]).action == "process"  # an output older than the attempt proves nothing
    assert j.plan([f], [out], max_attempts=1).action == "failed"  # crashed on every allowed attempt
    j.begin([f])
    out.write_bytes(b"complete")  # renamed into place, then the process died before recording it
    plan = j.plan([f], [out])
    assert plan.action == "skip" and "interruption" in plan.reason
    e = j.get(f)
    assert e.state == "done" and e.attempts == 2 and e.outputs == [str(out)]


def test_failed_retry_policy_and_abandon(tmp_path, j):
    f = png(tmp_path / "in" / "a.png", 0)
    j.begin([f])
    j.fail(f, "a.png: broken\nsecond line dropped")
    e = j.get(f)
    assert e.state == "failed" and e.error == "a.png: broken"
    assert j.plan([f]).action == "failed"  # run: not retried ...
    assert j.plan([f], retry_failed=True).action == "process"  # ... unless asked
    assert j.plan([f], max_attempts=3).action == "process"  # watch: retried while attempts remain
    j.begin([f])
    j.fail(f, "again", retry_in_s=60)
    assert j.plan([f], max_attempts=3).action == "wait"  # backoff
    assert j.plan([f], max_attempts=3, now=time.time() + 61).action == "process"
    assert j.plan([f], max_attempts=2).action == "failed"  # attempts used up
    j.begin([f])
    j.abandon(f)  # SIGTERM mid-item: back to pending, the attempt not counted
    e = j.get(f)
    assert e.state == "pending" and e.attempts == 2
    assert j.counts()["pending"] == 1


def test_groups_are_keyed_by_first_file_with_all_members(tmp_path, j):
    files = [png(tmp_path / "in" / f"b{i}.png", i) for i in range(3)]
    j.begin(files)
    j.finish(files[0], [tmp_path / "out" / "b0-b2.png"])
    e = j.get(files[0])
    assert [Path(m.path).name for m in e.members] == ["b0.png", "b1.png", "b2.png"]
    assert set(j.member_index()) == {str(f.resolve()) for f in files}
    png(files[2], 9)  # one frame replaced: the bracket is redone
    assert j.plan(files).changed


def test_journal_and_temp_files_are_never_inputs(tmp_path, j):
    d = tmp_path / "out"
    png(d / "a.png", 0)
    (d / f".{TMP_MARK}0123abcd-a.png").write_bytes(b"partial")
    (d / f".{TMP_MARK}0123abcd-other.png").write_bytes(b"partial")
    assert (d / JOURNAL_NAME).exists()
    assert [p.name for p in collect_inputs([d])] == ["a.png"]
    removed = remove_temp_files([d / "a.png"])
    assert [p.name for p in removed] == [f".{TMP_MARK}0123abcd-a.png"]
    assert (d / f".{TMP_MARK}0123abcd-other.png").exists()


def test_fifo_is_never_opened_for_hashing(tmp_path, j):
    fifo = tmp_path / "in" / "pipe.png"
    fifo.parent.mkdir()
    os.mkfifo(fifo)
    e = j.begin([fifo])  # would block forever if it were opened
    assert e.members[0].sha256 is None


def test_api_run_with_journal_resumes_and_redoes_changed(tmp_path):
    files = [png(tmp_path / "in" / f"f{i}.png", i) for i in range(4)]
    (tmp_path / "in" / "bad.png").write_bytes(b"not a png")
    files = collect_inputs([tmp_path / "in"])
    pipe = load_pipeline(FAST)
    out = tmp_path / "out"
    r = pipe.run(files, out, journal=True)
    assert (r.count("done"), r.count("failed")) == (4, 1)
    mtimes = {p.name: p.stat().st_mtime_ns for p in out.glob("*.png")}
    png(tmp_path / "in" / "f2.png", 42)
    r = pipe.run(files, out, journal=True)
    assert (r.count("done"), r.count("skipped"), r.count("failed")) == (1, 3, 1)
    assert "not retried" in r.failed[0].error and "bad.png" in r.failed[0].error
    assert {p.name: p.stat().st_mtime_ns for p in out.glob("*.png")} == {**mtimes, "f2.png": (out / "f2.png").stat().st_mtime_ns}
    assert (out / "f2.png").stat().st_mtime_ns != mtimes["f2.png"]
    r = pipe.run(files, out, journal=True, retry_failed=True)
    assert r.count("failed") == 1 and "not retried" not in r.failed[0].error
    with Journal.for_output(out) as jr:
        rows = {Path(e.path).name: e for e in jr.entries()}
    assert rows["bad.png"].attempts == 2 and rows["f0.png"].attempts == 1 and rows["f2.png"].attempts == 1
    assert all(rows[f"f{i}.png"].state == "done" for i in range(4))


def test_cli_run_uses_the_journal_by_default(tmp_path):
    from click.testing import CliRunner

    from restore.cli import cli

    def run(*args):
        return CliRunner().invoke(cli, ["run", *map(str, args)])

    for i in range(3):
        png(tmp_path / "in" / f"f{i}.png", i)
    pipe = tmp_path / "p.yaml"
    pipe.write_text("version: 1\nname: fast\nsteps:\n  - resize: {scale: 0.5}\n  - write: {path: '{stem}.png'}\n")
    out = tmp_path / "out"
    r = run(pipe, tmp_path / "in", "-o", out, "--timeout", "0")
    assert r.exit_code == 0 and "3 done" in r.output, r.output
    db = sqlite3.connect(out / JOURNAL_NAME)
    assert db.execute("SELECT COUNT(*) FROM items WHERE state = 'done'").fetchone()[0] == 3
    db.close()
    (out / "f1.png").unlink()  # lost output: only that one is redone
    r = run(pipe, tmp_path / "in", "-o", out, "--timeout", "0")
    assert r.exit_code == 0 and "1 done, 2 skipped" in r.output, r.output
    out2 = tmp_path / "out2"
    r = run("--no-journal", pipe, tmp_path / "in", "-o", out2, "--timeout", "0")
    assert r.exit_code == 0 and not (out2 / JOURNAL_NAME).exists()


def test_one_process_per_output_folder_and_clear_errors(tmp_path):
    from click.testing import CliRunner

    from restore.cli import cli
    from restore.journal import JournalError

    out = tmp_path / "out"
    with Journal.for_output(out):
        with pytest.raises(JournalError, match=f"another restore run/watch \\(pid {os.getpid()}\\) is working on this output folder"):
            Journal.for_output(out)
        with Journal(out / JOURNAL_NAME, exclusive=False) as reader:  # inspecting is fine
            assert reader.counts()["done"] == 0
    Journal.for_output(out).close()  # released
    bad = tmp_path / "bad"
    bad.mkdir()
    (bad / JOURNAL_NAME).write_bytes(b"this is not a database" * 100)
    png(tmp_path / "in" / "a.png", 0)
    (tmp_path / "p.yaml").write_text("version: 1\nsteps:\n  - resize: {scale: 0.5}\n  - write: {path: '{stem}.png'}\n")
    r = CliRunner().invoke(cli, ["run", str(tmp_path / "p.yaml"), str(tmp_path / "in"), "-o", str(bad), "--timeout", "0"])
    assert r.exit_code == 2 and "cannot open the journal" in r.output and "--no-journal" in r.output, r.output
