"""The public API is frozen: ``restore.__all__`` and the signatures of its functions and constructors.

A change here is a change for every user's code. When the API changes on purpose, update the tables below in the
same commit and say why in its message (CONTRIBUTING.md, "The public API").
"""

from __future__ import annotations

import importlib.metadata
import inspect
import sys
from pathlib import Path

import restore

ROOT = Path(__file__).resolve().parents[1]

#: ``restore.__all__``, in order.
ALL = [
    "Image",
    "Encoding",
    "Metadata",
    "SRGB",
    "LINEAR_REC709",
    "CAMERA_LINEAR",
    "RawOptions",
    "read",
    "write",
    "load_model",
    "load_pipeline",
    "RestoreError",
    "InputError",
    "OutputError",
    "PipelineError",
    "ModelError",
    "__version__",
]

#: ``str(inspect.signature(obj))`` of every function and class in ``__all__`` (a class: its constructor).
#: Exceptions that keep ``Exception``'s constructor have no Python signature: ``(*args)``.
SIGNATURES = {
    "Image": "(pixels: 'np.ndarray', encoding: 'Encoding' = Encoding(transfer='srgb', primaries='rec709', "
             "referred='display'), meta: 'Metadata' = <factory>) -> None",
    "Encoding": "(transfer: 'Transfer' = 'srgb', primaries: 'Primaries' = 'rec709', referred: 'Referred' = 'display', cfa: 'bool' = False) -> None",
    "Metadata": "(source: 'Path | None' = None, source_format: 'str | None' = None, bit_depth: 'int | None' = None, "
                "exposure_time_s: 'float | None' = None, iso: 'float | None' = None, f_number: 'float | None' = None, "
                "make: 'str | None' = None, model: 'str | None' = None, capture_time: 'str | None' = None, "
                "cfa_pattern: 'str | None' = None, black_level: 'list[float] | None' = None, "
                "white_level: 'float | None' = None, white_balance: 'list[float] | None' = None, "
                "exif: 'bytes | None' = None, icc_profile: 'bytes | None' = None, extra: 'dict[str, Any]' = <factory>, noise_profile: 'Any' = None) -> None",
    "RawOptions": "(white_balance: 'WhiteBalance | Sequence[float]' = 'auto', demosaic: 'str' = 'ahd', "
                  "output: \"Literal['linear-rec709', 'camera', 'cfa']\" = 'linear-rec709', half_size: 'bool' = False) -> None",
    "read": "(path: 'str | Path', raw: 'RawOptions | None' = None) -> 'Image'",
    "write": "(image: 'Image', path: 'str | Path', *, bit_depth: 'int | None' = None, dtype: 'str' = 'half', "
             "compression: 'str | None' = None, quality: 'int' = 95) -> 'Path'",
    "load_model": "(name_or_path: 'str | Path') -> 'RestorationModel'",
    "load_pipeline": "(source: 'str | Path | dict[str, Any]') -> 'Pipeline'",
    "RestoreError": "(*args)",
    "InputError": "(path: 'str | Path | None', problem: 'str')",
    "OutputError": "(path: 'str | Path | None', problem: 'str')",
    "PipelineError": "(*args)",
    "ModelError": "(*args)",
}

#: The constants and what they are.
VALUES = {
    "SRGB": "Encoding(transfer='srgb', primaries='rec709', referred='display')",
    "LINEAR_REC709": "Encoding(transfer='linear', primaries='rec709', referred='scene')",
    "CAMERA_LINEAR": "Encoding(transfer='linear', primaries='camera', referred='scene')",
}

#: The error hierarchy users catch: name -> its base.
ERROR_BASES = {
    "RestoreError": "Exception",
    "InputError": "RestoreError",
    "OutputError": "InputError",
    "PipelineError": "RestoreError",
    "ModelError": "RestoreError",
}


def _signature(obj) -> str:
    try:
        return str(inspect.signature(obj))
    except ValueError:  # a class that keeps a builtin constructor (Exception's)
        return "(*args)"


def test_all_is_frozen():
    assert list(restore.__all__) == ALL
    for name in ALL:
        assert hasattr(restore, name), f"restore.__all__ names {name}, which restore does not have"


def test_signatures_are_frozen():
    actual = {n: _signature(getattr(restore, n)) for n in ALL if callable(getattr(restore, n))}
    changed = {n: actual.get(n) for n in set(actual) | set(SIGNATURES) if actual.get(n) != SIGNATURES.get(n)}
    assert not changed, ("public signatures changed (update SIGNATURES deliberately if this is intended):\n"
                         + "\n".join(f"  {n}: {s}" for n, s in sorted(changed.items(), key=lambda kv: kv[0])))


def test_constants_and_error_hierarchy_are_frozen():
    assert {n: repr(getattr(restore, n)) for n in VALUES} == VALUES
    assert {n: getattr(restore, n).__bases__[0].__name__ for n in ERROR_BASES} == ERROR_BASES


def test_the_version_lives_in_one_place():
    """``restore.__version__`` is the installed distribution's version: pyproject reads it from the package."""
    assert restore.__version__ == importlib.metadata.version("restore-imaging")
    if sys.version_info >= (3, 11):
        import tomllib

        project = tomllib.loads((ROOT / "pyproject.toml").read_text())
        assert "version" not in project["project"] and "version" in project["project"]["dynamic"]
        assert project["tool"]["setuptools"]["dynamic"]["version"] == {"attr": "restore.__version__"}


def test_the_package_ships_its_type_hints():
    assert (ROOT / "restore" / "py.typed").is_file()
    if sys.version_info >= (3, 11):
        import tomllib

        data = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]["package-data"]
        assert "py.typed" in data["restore"]
