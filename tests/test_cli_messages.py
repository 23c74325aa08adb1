"""Error messages that say what to do: DensePose weights missing, and options named by messages.

Every message naming an option (``--xxx``) must name one that exists on the command that printed it:
checked statically for the string literals of each command module and the per-command hint tables,
and dynamically for the messages triggered here.
"""

from __future__ import annotations

import ast
import re
import shutil
from pathlib import Path

import click
import pytest
import typer

from retarget.cli import main
from retarget.cli.app import app
from retarget.weights import load_manifest
from retarget.weights import resolve as resolve_module
from tests.conftest import EXAMPLE_IUV, EXAMPLE_PHOTO, REPO, one_error_line
from tests.media import make_driver

R50 = "densepose-r50-fpn-s1x"
OPTION = re.compile(r"(?<![\w-])--[a-z][a-z0-9-]*")
ROOT_OPTIONS = {"--debug", "--version", "--help"}


def _command(path: tuple[str, ...]) -> click.Command:
    command = typer.main.get_command(app)
    for name in path:
        command = command.commands[name]
    return command


def options_of(path: tuple[str, ...]) -> set[str]:
    """Every option spelling of ``retarget <path...>`` (plus the root options and --help)."""
    names = set(ROOT_OPTIONS)
    for param in _command(path).params:
        names.update(o for o in (*param.opts, *param.secondary_opts) if o.startswith("--"))
    return names


QUOTED = re.compile(r"`retarget ([^`]*)`")


def _quoted_command(span: str) -> tuple[str, ...]:
    """The command path at the start of a quoted ``retarget ...`` example (``weights fetch`` ...)."""
    path: tuple[str, ...] = ()
    command = typer.main.get_command(app)
    for word in span.split():
        sub = getattr(command, "commands", {}).get(word)
        if sub is None:
            break
        path, command = (*path, word), sub
    return path


def unknown_options(path: tuple[str, ...], text: str) -> set[str]:
    """Options named in ``text`` that the command that prints it lacks. An option inside a quoted
    `` `retarget CMD ...` `` example is checked against CMD instead."""
    unknown = set()
    for span in QUOTED.findall(text):
        unknown |= set(OPTION.findall(span)) - options_of(_quoted_command(span))
    return unknown | (set(OPTION.findall(QUOTED.sub("", text))) - options_of(path))


def assert_options_exist(path: tuple[str, ...], text: str) -> None:
    unknown = unknown_options(path, text)
    assert not unknown, f"`retarget {' '.join(path)}` has no {sorted(unknown)}, but its message names them: {text}"


# -- DensePose weights missing ------------------------------------------------------------------------
@pytest.fixture(scope="module")
def media(tmp_path_factory):
    """photo.jpg (no sidecar), sided.jpg (+ sided_IUV.png), clip.mp4 (no IUV), iuvclip.mp4 (+ .iuv/)."""
    root = tmp_path_factory.mktemp("messages")
    shutil.copyfile(EXAMPLE_PHOTO, root / "photo.jpg")
    shutil.copyfile(EXAMPLE_PHOTO, root / "sided.jpg")
    shutil.copyfile(EXAMPLE_IUV, root / "sided_IUV.png")
    make_driver(root / "clip.mp4", n=3, width=96, height=80, audio=False, sidecar=False)
    make_driver(root / "iuvclip.mp4", n=3, width=96, height=80, audio=False, sidecar=True)
    return root


def _check_missing_weights(text: str, path: tuple[str, ...], *, inputs: list[str], says: list[str]) -> None:
    url = load_manifest().get(R50).urls[0]
    assert "no DensePose weights are installed" in text
    assert f"retarget weights fetch {R50}" in text and url in text and "retarget weights import FILE" in text
    for name in inputs:
        assert name in text
    for phrase in says:
        assert phrase in text, phrase
    assert_options_exist(path, text)


def test_video_driver_needs_densepose(media, capsys):
    code = main(["video", "--source", str(media / "sided.jpg"), "--driver", str(media / "clip.mp4"), "--weight-free"])
    assert code == 1
    text = one_error_line(capsys)
    _check_missing_weights(text, ("video",), inputs=[str(media / "clip.mp4")],
                           says=["the driving video needs DensePose", "--driver-iuv", "clip.iuv/", "clip.iuv.npz",
                                 "--densepose-weights"])
    assert "source photo" not in text
    assert not list(media.glob("*_as_*.mp4"))


def test_video_source_needs_densepose(media, capsys):
    code = main(["video", "--source", str(media / "photo.jpg"), "--driver", str(media / "iuvclip.mp4"),
                 "--weight-free"])
    assert code == 1
    text = one_error_line(capsys)
    _check_missing_weights(text, ("video",), inputs=[str(media / "photo.jpg")],
                           says=["the source photo needs DensePose", "--source-iuv", "photo_IUV.png"])
    assert "driving video" not in text


def test_frames_names_both_inputs_before_any_work(media, tmp_path, capsys):
    out = tmp_path / "inspect"
    code = main(["frames", "--source", str(media / "photo.jpg"), "--driver", str(media / "clip.mp4"), "--out", str(out),
                 "--weight-free"])
    assert code == 1
    text = one_error_line(capsys)
    _check_missing_weights(text, ("frames",), inputs=[str(media / "photo.jpg"), str(media / "clip.mp4")],
                           says=["--source-iuv", "--driver-iuv", "source photo", "driving video"])
    assert not out.exists()


def test_densepose_command_names_its_own_option(media, tmp_path, capsys):
    assert main(["densepose", str(media / "photo.jpg"), "--out", str(tmp_path / "o.npz")]) == 1
    text = one_error_line(capsys)
    _check_missing_weights(text, ("densepose",), inputs=[str(media / "photo.jpg")], says=["--weights FILE.pkl"])
    assert "--densepose-weights" not in text


def _batch_media(media: Path, tmp_path: Path) -> tuple[Path, Path, Path]:
    sources, drivers, out = tmp_path / "sources", tmp_path / "drivers", tmp_path / "out"
    sources.mkdir()
    drivers.mkdir()
    for name in ("photo.jpg", "sided.jpg", "sided_IUV.png"):
        shutil.copyfile(media / name, sources / name)
    shutil.copyfile(media / "clip.mp4", drivers / "clip.mp4")
    shutil.copyfile(media / "iuvclip.mp4", drivers / "iuvclip.mp4")
    shutil.copytree(media / "iuvclip.iuv", drivers / "iuvclip.iuv")
    return sources, drivers, out


@pytest.mark.parametrize("dry_run", [True, False], ids=["dry-run", "run"])
def test_batch_fail_fast_reports_each_job_up_front(media, tmp_path, capsys, dry_run):
    sources, drivers, out = _batch_media(media, tmp_path)
    args = ["batch", "--sources", str(sources), "--drivers", str(drivers), "--out-dir", str(out), "--weight-free",
            "--fail-fast"]
    assert main(args + (["--dry-run"] if dry_run else [])) == 1
    text = one_error_line(capsys)
    _check_missing_weights(text, ("batch",), inputs=[],
                           says=["3 of 4 jobs to run need DensePose",
                                 "clip_as_photo.mp4 (source photo photo.jpg and driving video clip.mp4)",
                                 "clip_as_sided.mp4 (driving video clip.mp4)",
                                 "iuvclip_as_photo.mp4 (source photo photo.jpg)", "source_iuv column",
                                 "clip.iuv/"])
    assert "iuvclip_as_sided" not in text
    assert not out.exists()  # nothing was started: no report, no output folder


@pytest.mark.parametrize("dry_run", [True, False], ids=["dry-run", "run"])
def test_batch_fails_each_job_that_needs_densepose_and_runs_the_others(media, tmp_path, capsys, dry_run):
    sources, drivers, out = _batch_media(media, tmp_path)
    args = ["batch", "--sources", str(sources), "--drivers", str(drivers), "--out-dir", str(out), "--weight-free",
            "--size", "64"]
    assert main(args + (["--dry-run"] if dry_run else [])) == 1
    captured = capsys.readouterr()
    assert captured.err.count("error:") == 1
    assert "cannot run: 3 → reported as failed" in captured.err
    if dry_run:
        assert "3 of 4 jobs cannot run" in captured.err and not out.exists()
        return
    import json

    records = {r["name"]: r for r in json.loads((out / "batch_report.json").read_text())["jobs"]}
    assert records["iuvclip_as_sided.mp4"]["status"] == "ok" and (out / "iuvclip_as_sided.mp4").is_file()
    for name, inputs in (("clip_as_photo.mp4", ["photo.jpg", "clip.mp4"]), ("clip_as_sided.mp4", ["clip.mp4"]),
                         ("iuvclip_as_photo.mp4", ["photo.jpg"])):
        assert records[name]["status"] == "failed" and not (out / name).exists()
        _check_missing_weights(records[name]["error"], ("batch",), inputs=inputs, says=["--densepose-weights"])
    assert "sided.jpg" not in records["clip_as_sided.mp4"]["error"]  # its source has an IUV sidecar
    assert "error: 3 of 4 jobs failed" in captured.err


def test_image_says_how_to_make_an_iuv(capsys):
    assert main(["image", "--source", str(EXAMPLE_PHOTO), "--target-iuv", str(EXAMPLE_IUV), "-o", "x.png"]) == 2
    text = one_error_line(capsys)
    assert "retarget densepose" in text and f"retarget weights fetch {R50}" in text
    assert_options_exist(("image",), text)


# -- every option a message names exists on the command that prints it ---------------------------------
def _commands_of_module(path: Path) -> list[tuple[str, ...]]:
    """The command paths a CLI module defines (``@app.command("x")`` / ``@weights_app.command("y")``)."""
    tree = ast.parse(path.read_text())
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute) and node.func.attr == "command":
            owner = node.func.value.id if isinstance(node.func.value, ast.Name) else ""
            if node.args and isinstance(node.args[0], ast.Constant):
                name = node.args[0].value
                found.append(("weights", name) if owner == "weights_app" else (name,))
    return found


def _message_strings(path: Path) -> list[str]:
    """String literals of a module that are not option declarations or help texts (docstrings excluded)."""
    tree = ast.parse(path.read_text())
    skip: set[int] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Call) and getattr(node.func, "attr", "") in ("Option", "Argument", "command", "Typer"):
            skip.update(id(n) for n in ast.walk(node))
        if isinstance(node, (ast.FunctionDef, ast.Module)) and ast.get_docstring(node) is not None:
            skip.add(id(node.body[0].value))
        if isinstance(node, ast.Assign) and any(getattr(t, "id", "") == "_HELP" for t in node.targets):
            skip.update(id(n) for n in ast.walk(node))
    return [n.value for n in ast.walk(tree)
            if isinstance(n, ast.Constant) and isinstance(n.value, str) and id(n) not in skip]


COMMAND_MODULES = sorted(p for p in (REPO / "retarget" / "cli").glob("*.py") if _commands_of_module(p))


@pytest.mark.parametrize("module", COMMAND_MODULES, ids=lambda p: p.stem)
def test_messages_of_each_command_module_name_its_own_options(module):
    commands = _commands_of_module(module)
    strings = [s for s in _message_strings(module) if OPTION.search(s)]
    for text in strings:
        # a module defining several commands (weights): the option must exist on one of them
        assert any(not unknown_options(c, text) for c in commands), \
            f"{module.name}: {text!r} names an option none of {commands} has"


#: Library modules whose messages name options, and the commands whose runs reach them.
#: (retarget/weights/resolve.py keeps per-command tables instead: checked below.)
LIBRARY_MESSAGES = {
    "retarget/io/image.py": ["image", "video", "frames", "batch", "stream"],
    "retarget/io/atomic.py": ["image", "video", "frames", "batch", "convert-iuv", "stream", "texture"],
    "retarget/io/guard.py": ["image", "video", "frames", "batch", "convert-iuv", "stream", "texture"],
    "retarget/io/output.py": ["video", "batch"],
    "retarget/pipeline/job.py": ["video", "frames", "batch", "texture", "stream"],
    "retarget/pipeline/texture.py": ["video", "frames", "batch", "image"],
    "retarget/pipeline/pair.py": ["video", "frames", "image", "texture", "stream"],
    "retarget/pipeline/video.py": ["video", "frames", "batch", "stream"],
    "retarget/pipeline/people.py": ["video", "frames", "batch", "stream"],
    "retarget/pipeline/keyframes.py": ["video", "frames", "batch", "densepose"],
    "retarget/pipeline/steady.py": ["video", "batch", "stream"],
    "retarget/pipeline/precision.py": ["video", "batch", "stream"],
    "retarget/inspect/frames.py": ["frames"],
    "retarget/io/stream_io.py": ["stream"],
    "retarget/pipeline/live.py": ["stream"],
    "retarget/pipeline/live_stream.py": ["stream"],
    "retarget/ui/jobs.py": ["ui"],
    "retarget/ui/app.py": ["video"],  # the page's setting labels name the `retarget video` option of each setting
    "retarget/batch/jobs.py": ["batch"],
    "retarget/batch/plan.py": ["batch"],
    "retarget/batch/run.py": ["batch"],
    "retarget/batch/ray_backend.py": ["batch"],
    "retarget/engine/__init__.py": ["video", "frames", "batch", "image", "densepose", "stream"],
    "retarget/engine/openvino_refiner.py": ["video", "frames", "batch", "image", "stream"],
    "retarget/engine/calibration.py": ["video", "batch"],
    "retarget/engine/auto.py": ["video", "batch", "stream"],
    "retarget/pipeline/calibration_frames.py": ["video", "batch"],
    "retarget/weights/importer.py": [("weights", "import"), ("weights", "fetch")],
    "densepose_adapter/torchvision_backend.py": ["video", "frames", "batch", "densepose"],
    "densepose_adapter/detectron2_backend.py": ["video", "frames", "batch", "densepose"],
    "densepose_adapter/rcnn/convert.py": ["video", "frames", "batch", "densepose"],
}


def _runtime_messages(path: Path) -> list[str]:
    """Messages a library module can print: string parts of its raise/print calls (not docstrings)."""
    tree = ast.parse(path.read_text())
    found = []
    for node in ast.walk(tree):
        if isinstance(node, (ast.Raise, ast.Call, ast.Assign)):
            if isinstance(node, ast.Call) and not (getattr(node.func, "id", "") == "print"
                                                     or getattr(node.func, "id", "").endswith("Error")):
                continue
            text = " ".join(n.value for n in ast.walk(node) if isinstance(n, ast.Constant) and isinstance(n.value, str))
            if OPTION.search(text):
                found.append(text)
    return found


#: Options named only in messages that other commands cannot trigger: --keep-partial hints are added
#: only when ``options.command`` is ``video`` (run below); --batch-size/--precision values are checked by
#: VideoOptions.validate, and ``frames`` never sets them (its defaults are valid).
GUARDED = {"--keep-partial": {"video"}, "--batch-size": {"video", "batch"}, "--precision": {"video", "batch"}}


@pytest.mark.parametrize("module", sorted(LIBRARY_MESSAGES), ids=lambda m: m)
def test_library_messages_name_options_of_every_command_that_reaches_them(module):
    messages = _runtime_messages(REPO / module)
    for command in LIBRARY_MESSAGES[module]:
        path = command if isinstance(command, tuple) else (command,)
        for text in messages:
            unknown = {o for o in unknown_options(path, text) if path[0] in GUARDED.get(o, {path[0]})}
            assert not unknown, f"{module}: `retarget {' '.join(path)}` has no {sorted(unknown)}: {text}"


def _damaged_driver(folder: Path) -> Path:
    """A PNG-coded clip whose frame 6 is overwritten (the decoder fails there), with its IUV sidecar."""
    import av
    import numpy as np

    from tests import badmedia

    frames, iuvs = badmedia.person_frames(10, 96, 96)
    path = badmedia.write_video(folder / "coded.mov", frames, codec="png", fmt="mov", pix_fmt="rgb24")
    with av.open(str(path)) as container:
        entry = container.streams.video[0].index_entries[6]
    data = bytearray(path.read_bytes())
    start = entry.pos + entry.size // 3
    data[start:start + 40] = bytes(b ^ 0xFF for b in data[start:start + 40])
    bad = folder / "damaged.mov"
    bad.write_bytes(bytes(data))
    np.savez(folder / "damaged.iuv.npz", iuv=iuvs)
    return bad


def test_keep_partial_is_offered_only_where_it_exists(tmp_path, capsys):
    from tests import badmedia

    driver = _damaged_driver(tmp_path)
    source, _ = badmedia.write_source(tmp_path / "src")
    runs = {"video": ["video", "--source", str(source), "--driver", str(driver), "-o", str(tmp_path / "o.mp4"),
                      "--weight-free", "-q"],
            "frames": ["frames", "--source", str(source), "--driver", str(driver), "--out", str(tmp_path / "f"),
                       "--weight-free", "-q", "--frames", "0:9"]}
    for command, argv in runs.items():
        assert main(argv) == 1
        text = one_error_line(capsys)
        assert "corrupt" in text, text
        assert ("--keep-partial" in text) == (command == "video"), text
        assert_options_exist((command,), text)


def test_every_library_message_with_an_option_is_in_the_table():
    """A new module printing options must be added to LIBRARY_MESSAGES (so this test cannot go stale)."""
    listed = set(LIBRARY_MESSAGES) | {"retarget/weights/resolve.py"}
    for folder in ("retarget", "densepose_adapter"):
        for path in sorted((REPO / folder).rglob("*.py")):
            relative = path.relative_to(REPO).as_posix()
            if relative.startswith("retarget/cli/") or relative in listed:
                continue
            assert not _runtime_messages(path), f"{relative} prints options: add it to LIBRARY_MESSAGES"


def test_the_scan_finds_messages_and_catches_a_wrong_option():
    video = REPO / "retarget" / "cli" / "video.py"
    assert _commands_of_module(video) == [("video",)]
    assert any("--source-uv" in s for s in _message_strings(REPO / "retarget" / "cli" / "image.py"))
    assert any("--allow-large" in m for m in _runtime_messages(REPO / "retarget" / "io" / "image.py"))
    with pytest.raises(AssertionError, match="--weights"):
        assert_options_exist(("video",), "error: pass --weights PATH")
    assert unknown_options(("weights", "import"), "use it: `retarget video --densepose-weights F`") == set()
    assert unknown_options(("weights", "import"), "use it: `retarget video --weights F`") == {"--weights"}
    assert unknown_options(("video",), "rerun with `retarget --debug ...`") == set()


@pytest.mark.parametrize("key", sorted(resolve_module._PRECOMPUTED), ids=lambda k: "-".join(k))
def test_precomputed_hints_name_options_of_their_command(key):
    command, _ = key
    assert_options_exist((command,), resolve_module._PRECOMPUTED[key])
    assert_options_exist((command,), resolve_module._WEIGHTS_OPTION.get(command, ""))  # `ui`: none


def test_densepose_weights_option_table_covers_every_command_that_runs_densepose():
    assert set(resolve_module._WEIGHTS_OPTION) == {"video", "frames", "batch", "densepose", "texture", "stream"}
    for command, option in resolve_module._WEIGHTS_OPTION.items():
        assert option in options_of((command,))


def test_frames_and_batch_accept_allow_large_that_the_photo_check_names():
    # read_image_rgb's refusal says "pass --allow-large"; every command reading a source photo has it
    for command in ("video", "image", "frames", "batch"):
        assert "--allow-large" in options_of((command,))
