"""Help renders what was written: literal brackets, no `<bool>` on flags, unwrapped examples, --version,
claims that agree with the measurements, progress-bar labels that say what runs."""

from __future__ import annotations

import re
from pathlib import Path

import click
import pytest
import tomllib
import typer

import retarget
from retarget.cli import main
from retarget.cli.app import app, verbatim_examples
from tests.conftest import REPO

BRACKETED = re.compile(r"\[\[[^\[\]]*\]\]|\[[^\[\]]*\]")


def _walk(command: click.Command, path: tuple[str, ...] = ()):
    yield path, command
    for name, sub in getattr(command, "commands", {}).items():
        yield from _walk(sub, (*path, name))


COMMANDS = list(_walk(typer.main.get_command(app)))


def _help(path: tuple[str, ...], capsys) -> str:
    assert main([*path, "--help"]) == 0
    return capsys.readouterr().out


def _flat(text: str) -> str:
    return " ".join(text.split())


def _written(command: click.Command) -> list[str]:
    texts = [command.help or ""] + [getattr(p, "help", None) or "" for p in command.params]
    return [t for t in texts if t]


@pytest.mark.parametrize("path,command", COMMANDS, ids=lambda v: " ".join(v) if isinstance(v, tuple) else "")
def test_help_shows_every_bracketed_fragment_and_no_bool_metavar(path, command, capsys):
    shown = _help(path, capsys)
    flat = _flat(shown)
    fragments = [m for text in _written(command) for m in BRACKETED.findall(text)]
    for fragment in fragments:
        assert _flat(fragment) in flat, f"`retarget {' '.join(path)} --help` lost {fragment!r}"
    assert "<bool>" not in shown


def test_known_bracket_fragments_are_among_those_checked(capsys):
    """The fragments the issue saw vanish are found by the scan above (so the check is not vacuous)."""
    by_path = {path: command for path, command in COMMANDS}
    batch = [m for t in _written(by_path[("batch",)]) for m in BRACKETED.findall(t)]
    densepose = [m for t in _written(by_path[("densepose",)]) for m in BRACKETED.findall(t)]
    assert "[[job]]" in batch and any(f.startswith("[default: 0.8") for f in densepose)
    assert "TOML with [[job]] tables" in _flat(_help(("batch",), capsys))
    assert "Detection score threshold [default: 0.8, or the JSON config's]" in _flat(_help(("densepose",), capsys))


def test_examples_stay_on_one_line(capsys):
    shown = _help(("batch",), capsys)
    line = "retarget batch --sources photos/ --drivers clips/ --out-dir /shared/out --backend ray --address auto"
    assert any(row.strip() == line for row in shown.splitlines())
    marked = verbatim_examples("Intro text.\n\n  retarget x --a\n\nMore.")
    assert marked == "Intro text.\n\n\b\n  retarget x --a\n\nMore."


def test_version(capsys):
    assert main(["--version"]) == 0
    out = capsys.readouterr().out.strip()
    version = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["version"]
    assert out == f"retarget {version}" == f"retarget {retarget.__version__}"


# -- claims agree with the measurements in docs/performance.md ---------------------------------------
def _measured_bf16_speedup() -> float:
    """fp32 / bf16 seconds per frame of `ours` at the default batch size (4), from the table."""
    text = (REPO / "docs" / "performance.md").read_text()
    rows = {(m.group(1), m.group(2)): float(m.group(3))
            for m in re.finditer(r"^\| ours \| (fp32|bf16) \| (\d+) \| ([\d.]+) \|", text, re.MULTILINE)}
    return rows["fp32", "4"] / rows["bf16", "4"]


def test_bf16_speedup_claims_match_the_measurement(capsys):
    claim = f"≈{_measured_bf16_speedup():.1f}×"
    places = {"video --help": _flat(_help(("video",), capsys)), "batch --help": _flat(_help(("batch",), capsys)),
              "README.md": (REPO / "README.md").read_text(),
              "docs/performance.md": (REPO / "docs" / "performance.md").read_text()}
    for where, text in places.items():
        assert f"bf16 ({claim} faster" in text or f"{claim} faster than fp32" in text, f"{where} does not say {claim}"
        others = {m for m in re.findall(r"bf16[^.|]{0,40}?((?:≈|~)\s?\d+(?:\.\d+)?\s?[×x])", text)}
        assert others <= {claim}, f"{where} also claims {others - {claim}} for bf16"


def test_progress_labels_say_what_runs():
    from densepose_adapter.precomputed import PrecomputedIUV
    from retarget.pipeline.densepose_stage import FrameDensePose
    from retarget.pipeline.video import RENDER_LABEL, analysis_label

    precomputed = FrameDensePose(PrecomputedIUV(REPO / "examples" / "driver.iuv"))
    assert precomputed.precomputed
    assert "read IUV" in analysis_label(precomputed) and "DensePose" not in analysis_label(precomputed)

    class _Model:
        name = "torchvision"

    assert "DensePose" in analysis_label(FrameDensePose(_Model()))
    assert "render" in RENDER_LABEL


def test_readme_documents_every_command():
    readme = (REPO / "README.md").read_text()
    for path, _ in COMMANDS:
        if len(path) == 1:
            assert f"retarget {path[0]}" in readme, path
    assert Path(REPO / "docs" / "performance.md").is_file()
