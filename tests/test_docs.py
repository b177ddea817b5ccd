"""The documentation is checked against the code (issue 18).

* ``docs/pipeline.md`` documents every pipeline step, every option of every step and every top-level key,
  with the allowed values and defaults the schema has; and it documents nothing the schema does not have.
* Every relative link in README.md, CONTRIBUTING.md and docs/*.md points to a file that exists (and to a heading
  that exists, where it names one).
* The README stays a front page: under 150 lines.
"""

from __future__ import annotations

import re
import typing
from pathlib import Path

import pytest
from pydantic import BaseModel
from pydantic_core import PydanticUndefined

from restore.pipeline import schema

ROOT = Path(__file__).resolve().parents[1]
PIPELINE_MD = ROOT / "docs" / "pipeline.md"

# --------------------------------------------------------------------------- markdown helpers


def _sections(text: str) -> list[tuple[int, str, str]]:
    """``(level, heading, body)`` per heading; the body runs to the next heading of the same or a higher level
    (so a section includes its sub-sections)."""
    lines = text.splitlines()
    heads = [(i, len(m.group(1)), m.group(2).strip()) for i, line in enumerate(lines)
             if (m := re.match(r"^(#{1,6})\s+(.*)$", line))]
    out = []
    for k, (i, level, title) in enumerate(heads):
        end = next((j for j, lv, _ in heads[k + 1:] if lv <= level), len(lines))
        out.append((level, title, "\n".join(lines[i + 1:end])))
    return out


def _section(title: str) -> str:
    found = [body for _, t, body in _sections(PIPELINE_MD.read_text()) if t == title]
    assert found, f"docs/pipeline.md has no heading {title!r}"
    return found[0]


def _own_table(body: str) -> dict[str, list[str]]:
    """The option table of a section (before its first sub-heading): option name -> the row's cells."""
    own = re.split(r"^#{1,6}\s", body, maxsplit=1, flags=re.M)[0]
    rows = {}
    for line in own.splitlines():
        m = re.match(r"^\|\s*`([^`]+)`\s*\|(.*)\|\s*$", line)
        if m:
            rows[m.group(1)] = [c.strip() for c in m.group(2).split("|")]
    return rows


def _literals(annotation) -> list:
    """Every value a ``Literal[...]`` inside ``annotation`` allows (through unions and optionals)."""
    if typing.get_origin(annotation) is typing.Literal:
        return list(typing.get_args(annotation))
    return [v for a in typing.get_args(annotation) for v in _literals(a)]


def _yaml(value) -> str:
    """A default as the YAML a user writes."""
    if isinstance(value, bool):
        return str(value).lower()
    if value == "":
        return '""'
    return str(value)


def _options_model(step_name: str) -> type[BaseModel]:
    wrapper = schema.STEP_TYPES[step_name]
    (field_name,) = wrapper.model_fields  # a step wrapper has one field, named like the step
    assert field_name == step_name
    options = wrapper.model_fields[field_name].annotation
    assert isinstance(options, type) and issubclass(options, BaseModel), (step_name, options)
    return options


def _check_table(title: str, model: type[BaseModel]) -> None:
    """Every field of ``model`` has a row in the section's table, with its allowed values and default; every row
    is a field."""
    body = _section(title)
    rows = _own_table(body)
    fields = model.model_fields
    missing = [name for name in fields if name not in rows]
    assert not missing, f"docs/pipeline.md section {title!r} does not document {missing}"
    extra = [name for name in rows if name not in fields]
    assert not extra, f"docs/pipeline.md section {title!r} documents options the schema does not have: {extra}"
    for name, f in fields.items():
        kind, default = rows[name][0], rows[name][1]
        for value in _literals(f.annotation):
            assert f"`{_yaml(value)}`" in kind, f"{title}.{name}: allowed value {value!r} not in {kind!r}"
        if f.is_required():
            assert "required" in default, f"{title}.{name} is required; the docs say {default!r}"
        elif f.default is not PydanticUndefined and f.default is not None and isinstance(f.default, (str, int, float, bool)):
            assert f"`{_yaml(f.default)}`" in default, f"{title}.{name}: default {f.default!r}; the docs say {default!r}"
        elif f.default_factory is not None and f.default_factory in (list, dict):
            assert f"`{_yaml(f.default_factory())}`" in default, f"{title}.{name}: default {f.default_factory()!r}; docs {default!r}"


# --------------------------------------------------------------------------- pipeline reference


@pytest.mark.parametrize("step", sorted(schema.STEP_TYPES))
def test_every_step_and_option_is_documented(step):
    _check_table(f"`{step}`", _options_model(step))


def test_top_level_keys_and_input_options_are_documented():
    _check_table("Top-level keys", schema.PipelineSpec)
    _check_table("`input`", schema.InputOptions)
    _check_table("`input.group`", schema.GroupOptions)


def test_no_step_is_documented_that_does_not_exist():
    documented = {m.group(1) for _, t, _ in _sections(PIPELINE_MD.read_text()) if (m := re.fullmatch(r"`([a-z_]+)`", t))}
    unknown = documented - {"input"} - set(schema.STEP_TYPES)
    assert not unknown, f"docs/pipeline.md documents steps that do not exist: {sorted(unknown)}"


def test_write_template_fields_and_formats_are_documented():
    from restore.io import FORMAT_OPTIONS

    import sys

    body = _section("`write`")
    write_module = sys.modules[_options_model("write").__module__]  # the write step's module defines its fields
    fields = getattr(write_module, "TEMPLATE_FIELDS", None) or schema.TEMPLATE_FIELDS
    for f in fields:
        assert f"`{{{f}}}`" in body, f"template field {{{f}}} not documented"
    for suffix, options in FORMAT_OPTIONS.items():
        assert f"`{suffix}`" in body, suffix
        for opt, allowed in options.items():
            if opt == "compression" and all(str(v).isdigit() for v in allowed):  # a zlib level range
                assert f'"{allowed[0]}"-"{allowed[-1]}"' in body, f"{suffix} compression levels not documented"
            elif opt == "compression":
                for v in allowed:
                    assert re.search(rf"\b{re.escape(str(v))}\b", body), f"{suffix} compression {v} not documented"


def test_tonemap_parameters_are_documented():
    from restore.hdr.tonemap import _DEFAULTS  # operator -> {parameter: default}

    body = _section("`tonemap`").partition("`params` by operator")[2]
    assert body, "docs/pipeline.md `tonemap`: no paragraph '`params` by operator'"
    for op, params in _DEFAULTS.items():
        m = re.search(rf"`{re.escape(op)}`: (.*?)(;|\.$|\n\n)", body, re.S | re.M)
        assert m, f"tonemap operator {op}: its parameters are not documented"
        for p, v in params.items():
            assert f"`{p}`" in m.group(1), f"tonemap {op} parameter {p} not documented"
            if v is not None:
                assert re.search(rf"`{p}` {re.escape(str(v))}\b", m.group(1)), f"tonemap {op}: {p} default {v} not documented"


# --------------------------------------------------------------------------- links


def _doc_files() -> list[Path]:
    return [ROOT / "README.md", ROOT / "CONTRIBUTING.md", *sorted((ROOT / "docs").glob("*.md"))]


def _slug(heading: str) -> str:
    """GitHub's anchor for a heading: lower case, punctuation dropped, spaces to hyphens."""
    s = re.sub(r"[^\w\- ]", "", heading.strip().lower())
    return s.replace(" ", "-")


#: docs/models.md is generated from the code by another part of issue 18 (the architecture table); until it is
#: in the tree a link to it is allowed to dangle.  Remove this exemption once the file exists.
NOT_YET = {ROOT / "docs" / "models.md"}


def test_every_relative_link_resolves():
    problems = []
    for doc in _doc_files():
        assert doc.exists(), doc
        text = re.sub(r"```.*?```", "", doc.read_text(), flags=re.S)  # links in code blocks are not links
        for target in re.findall(r"\[[^\]]*\]\(([^)\s]+)\)", text):
            if re.match(r"^[a-z]+:", target):  # http:, https:, mailto:
                continue
            path, _, anchor = target.partition("#")
            dest = (doc.parent / path).resolve() if path else doc
            if not dest.exists():
                if dest not in NOT_YET:
                    problems.append(f"{doc.relative_to(ROOT)}: {target}: no such file")
                continue
            if anchor and dest.suffix == ".md":
                slugs = {_slug(t) for _, t, _ in _sections(dest.read_text())}
                if anchor not in slugs:
                    problems.append(f"{doc.relative_to(ROOT)}: {target}: no heading #{anchor} in {dest.name}")
    assert not problems, "\n".join(problems)


def test_docs_folder_has_what_the_readme_promises():
    for name in ("pipeline.md", "raw.md", "hdr.md", "batch.md", "architecture.md"):
        assert (ROOT / "docs" / name).exists(), name
        assert f"docs/{name}" in (ROOT / "README.md").read_text(), f"README does not link docs/{name}"
    assert "docs/models.md" in (ROOT / "README.md").read_text()


def test_readme_is_a_front_page():
    lines = (ROOT / "README.md").read_text().splitlines()
    assert len(lines) < 150, f"README.md has {len(lines)} lines; move details to docs/"
