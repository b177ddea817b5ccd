"""A fresh machine is the test: CI installs as the README says, the suite leaves the user's cache alone,
and what the README promises after ``pip install -e .`` holds (issue 15, items 1-4)."""

from __future__ import annotations

import importlib.metadata
import re
import subprocess
import sys
import threading
import time
from pathlib import Path


ROOT = Path(__file__).resolve().parents[1]


def _readme_commands() -> list[str]:
    """The command lines of the README's first code block (its two set-up commands)."""
    text = (ROOT / "README.md").read_text()
    block = re.search(r"```bash\n(.*?)```", text, re.S).group(1)
    return [re.sub(r"\s+#.*$", "", line).strip() for line in block.splitlines() if line.strip()]


def test_ci_runs_the_readme_test_command_in_a_new_virtualenv():
    main_job, tests = _readme_commands()[:2]
    assert main_job.startswith("pip install -e . &&") and "restore run" in main_job
    assert tests == 'pip install -e ".[test]" && pytest -q'
    ci = (ROOT / ".ci" / "run").read_text()
    # a new virtualenv in a new temporary folder on every run, an empty user cache, no user site-packages
    assert re.search(r"mktemp -d", ci) and re.search(r"-m venv \"\$tmp/venv\"", ci)
    assert 'XDG_CACHE_HOME="$tmp/cache"' in ci and "PYTHONNOUSERSITE=1" in ci
    r = subprocess.run(["bash", str(ROOT / ".ci" / "run"), "--dry-run"], capture_output=True, text=True, timeout=30)
    assert r.returncode == 0 and r.stdout.strip() == tests  # the command CI runs is the README's, read from it


def test_the_suite_never_touches_the_users_cache():
    from restore.cache import cache_dir
    from tests.conftest import TEST_CACHE

    real = Path.home() / ".cache" / "restore"
    assert cache_dir() == Path(TEST_CACHE) / "restore"
    assert real != cache_dir() and real not in cache_dir().parents
    # subprocesses (worker processes, CLI tests) inherit it
    r = subprocess.run([sys.executable, "-c", "from restore.cache import cache_dir; print(cache_dir())"], capture_output=True,
                       text=True, timeout=60, cwd=ROOT)
    assert r.stdout.strip() == str(Path(TEST_CACHE) / "restore")


def test_watchdog_is_a_declared_dependency():
    reqs = importlib.metadata.requires("restore-imaging") or []
    base = [r for r in reqs if "extra ==" not in r]
    assert any(re.match(r"watchdog\b", r) for r in base), base
    import watchdog.observers  # noqa: F401  (installed by `pip install -e .`)


def test_watch_sees_a_new_file_by_its_event_not_a_rescan(tmp_path):
    """With rescans every 10 minutes, a dropped file is taken within seconds: the watcher runs on events."""
    from restore.pipeline import load_pipeline
    from restore.watch import Watcher, WatchOptions
    from tests.test_watch import FAST, encode

    d = tmp_path / "in"
    d.mkdir()
    w = Watcher(load_pipeline(FAST), d, tmp_path / "out", WatchOptions(settle_s=0.2, rescan_s=600, timeout_s=None, poll_s=0.05))
    th = threading.Thread(target=w.run)
    th.start()
    try:
        time.sleep(0.5)  # the first scan has run: only an event can find what comes now
        (d / "new.png").write_bytes(encode(1))
        deadline = time.monotonic() + 15
        while not w.report.done and time.monotonic() < deadline:
            time.sleep(0.05)
    finally:
        w.stop()
        th.join(30)
    assert [r.input.name for r in w.report.done] == ["new.png"]
    assert "relying on rescans" not in (tmp_path / "out" / "restore-watch.log").read_text()
