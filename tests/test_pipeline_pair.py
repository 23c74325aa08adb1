"""Single-pair pipeline and `retarget image`: every stage against the reference fixtures."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from retarget.cli import main
from retarget.models import Inpainter, Refiner
from retarget.pipeline import Models, prepare_source, render_targets, run_pair, stage_arrays
from tests.assets import coordinpaint_dir, uv_pair_dir
from tests.conftest import EXAMPLE_IUV, EXAMPLE_PHOTO, fixture_dirs, require_shared

FIXTURES = fixture_dirs("coordinpaint", "expected.npz")
LEARNED_KEYS = {"inpainter_input", "inpainter_raw", "inpainted_xy", "source_xy_textures", "source_textures",
                "pred_textures", "pred_img", "target_xy", "target_mask", "refiner_source_input",
                "refiner_target_input", "refined"}
WEIGHT_FREE_REFERENCE = {"pred_textures": "classical_pred_textures", "pred_img": "classical_pred_img"}


def assert_stages_match(stages: dict, expected, learned: bool) -> None:
    for key, value in stages.items():
        ref_key = key if learned else WEIGHT_FREE_REFERENCE.get(key, key)
        ref = expected[ref_key]
        assert value.dtype == np.float32 and value.shape == ref.shape, key
        err = np.abs(value - ref)
        if key == "inpainter_raw":
            err = err / np.maximum(1.0, np.abs(ref))
        assert err.max() <= 1e-4, f"{key}: max error {err.max():.3g}"


@pytest.mark.parametrize("fixture", FIXTURES, ids=lambda p: p.name)
def test_python_api_reproduces_every_stage(fixture):
    inputs = np.load(require_shared(fixture / "inputs.npz"))
    expected = np.load(fixture / "expected.npz")
    models = Models.from_checkpoint_dir(fixture)
    result = run_pair(inputs["source_img"], inputs["source_uv"], inputs["target_uv"], models)
    stages = stage_arrays(result)
    assert set(stages) == LEARNED_KEYS == {k for k in expected.keys() if not k.startswith("classical_")}
    assert_stages_match(stages, expected, learned=True)


@pytest.mark.parametrize("fixture", FIXTURES, ids=lambda p: p.name)
def test_weight_free_api_matches_classical_reference(fixture):
    inputs = np.load(require_shared(fixture / "inputs.npz"))
    expected = np.load(fixture / "expected.npz")
    result = run_pair(inputs["source_img"], inputs["source_uv"], inputs["target_uv"], None, fill="nearest")
    stages = stage_arrays(result)
    assert {"pred_textures", "pred_img", "source_xy_textures", "target_mask"} <= set(stages)
    assert not {"inpainter_raw", "inpainted_xy", "refined", "target_xy"} & set(stages)
    assert_stages_match(stages, expected, learned=False)
    np.testing.assert_allclose(result.source.completed_xy[0].numpy(), inputs["filled_xy"], atol=1e-6)
    # output = coarse person over the source background colour
    mask = result.target.target_mask[0, 0].numpy() > 0
    out = result.target.output[0].numpy()
    bg = result.source.background_rgb.numpy()
    np.testing.assert_allclose(out[:, ~mask], np.broadcast_to(bg[:, None], out[:, ~mask].shape), atol=1e-6)


@pytest.mark.parametrize("fixture", FIXTURES, ids=lambda p: p.name)
@pytest.mark.parametrize("weight_free", [False, True], ids=["learned", "weight-free"])
def test_cli_dump_stages(fixture, weight_free, tmp_path):
    require_shared(fixture / "source.png")
    expected = np.load(fixture / "expected.npz")
    out, dump = tmp_path / "out.png", tmp_path / "stages.npz"
    args = ["image", "--source", str(fixture / "source.png"), "--source-uv", str(fixture / "source_uv.npy"),
            "--target-uv", str(fixture / "target_uv.npy"), "--out", str(out), "--dump-stages", str(dump)]
    args += ["--weight-free", "--fill", "nearest"] if weight_free else ["--checkpoint-dir", str(fixture)]
    assert main(args) == 0
    assert out.stat().st_size > 0
    stages = dict(np.load(dump))
    if not weight_free:
        assert set(stages) == LEARNED_KEYS
    assert_stages_match(stages, expected, learned=not weight_free)


def test_source_state_is_reused_and_batches_equal_single_targets():
    gen = torch.Generator().manual_seed(0)
    h, w = 40, 64  # non-square
    torch.manual_seed(0)
    models = Models(Inpainter(ngf=4).eval(), Refiner(ngf=8).eval())
    image = torch.rand(1, 3, h, w, generator=gen)
    uv = torch.rand(1, 2, h, w, generator=gen) * 2 - 1
    uv[:, :, :4] = float("nan")
    targets = torch.rand(3, 2, h, w, generator=gen) * 2 - 1
    targets[:, :, :, :5] = float("nan")
    state = prepare_source(image, uv, models)
    assert state.learned and state.completed_xy.shape == (1, 2, h, w)
    batch = render_targets(state, targets, models)
    assert batch.output.shape == (3, 3, h, w)
    for i in range(3):
        single = render_targets(state, targets[i:i + 1], models)
        torch.testing.assert_close(single.output[0], batch.output[i], atol=1e-5, rtol=0)
    free = prepare_source(image, uv, None)
    assert not free.learned and render_targets(free, targets).output.shape == (3, 3, h, w)


def test_cli_image_errors_are_one_line(tmp_path, capsys):
    fixture = uv_pair_dir()
    base = ["image", "--source", str(fixture / "source.png"), "--source-uv", str(fixture / "source_uv.npy"),
            "--target-uv", str(fixture / "target_uv.npy"), "--weight-free"]
    # missing input → exit 1, one line, no output file
    code = main(["image", "--source", str(tmp_path / "nope.jpg"), "--source-uv", str(fixture / "source_uv.npy"),
                 "--target-uv", str(fixture / "target_uv.npy"), "--out", str(tmp_path / "o.png")])
    err = capsys.readouterr().err.strip()
    assert code == 1 and err.startswith("error:") and "nope.jpg" in err and len(err.splitlines()) == 1
    assert not (tmp_path / "o.png").exists()
    # existing output without --overwrite → usage error (2); output equal to an input → refused
    existing = tmp_path / "exists.png"
    existing.write_bytes(b"keep")
    assert main(base + ["--out", str(existing)]) == 2
    assert existing.read_bytes() == b"keep"
    assert main(base + ["--out", str(fixture / "source_uv.npy"), "--overwrite"]) == 2
    # a UV file that is not a UV map
    bad = tmp_path / "bad.npy"
    np.save(bad, np.zeros((4, 4, 3), np.float32))
    code = main(["image", "--source", str(fixture / "source.png"), "--source-uv", str(bad), "--target-uv",
                 str(fixture / "target_uv.npy"), "--out", str(tmp_path / "x.png")])
    assert code == 1 and "bad.npy" in capsys.readouterr().err
    assert list(tmp_path.glob("*.part*")) == []


def test_help_shows_examples(capsys):
    assert main(["--help"]) == 0
    assert "retarget video --source" in capsys.readouterr().out
    assert main(["image", "--help"]) == 0
    assert "retarget image --source" in capsys.readouterr().out


def test_cli_image_accepts_iuv_renders(tmp_path):
    photo, iuv = EXAMPLE_PHOTO, EXAMPLE_IUV
    via_iuv, via_uv = tmp_path / "a.npz", tmp_path / "b.npz"
    common = ["image", "--source", str(photo), "--weight-free"]
    assert main(common + ["--source-iuv", str(iuv), "--target-iuv", str(iuv), "--out", str(tmp_path / "a.png"),
                          "--dump-stages", str(via_iuv)]) == 0
    uv = uv_pair_dir() / "source_uv.npy"  # made from the same render with the training table
    assert main(common + ["--source-uv", str(uv), "--target-uv", str(uv), "--out", str(tmp_path / "b.png"),
                          "--dump-stages", str(via_uv)]) == 0
    a, b = np.load(via_iuv), np.load(via_uv)
    np.testing.assert_array_equal(a["target_mask"], b["target_mask"])
    assert np.mean(np.abs(a["pred_img"] - b["pred_img"]) < 1e-3) > 0.99
    assert main(common + ["--source-iuv", str(iuv), "--source-uv", str(uv), "--target-iuv", str(iuv),
                          "--out", str(tmp_path / "c.png")]) == 2


def test_outputs_get_the_usual_file_mode(tmp_path):
    import os

    from retarget.io.atomic import atomic_output

    target = tmp_path / "out.bin"
    with atomic_output(target) as tmp:
        tmp.write_bytes(b"x")
    mask = os.umask(0)
    os.umask(mask)
    assert target.stat().st_mode & 0o777 == 0o666 & ~mask


@pytest.mark.parametrize("learned", [False, True], ids=["weight-free", "learned"])
def test_cli_image_non_square(tmp_path, learned):
    import cv2

    fixture = uv_pair_dir()
    image = cv2.imread(str(fixture / "source.png"))[32:224]  # 192 x 256
    cv2.imwrite(str(tmp_path / "s.png"), image)
    np.save(tmp_path / "s.npy", np.load(fixture / "source_uv.npy")[32:224])
    np.save(tmp_path / "t.npy", np.load(fixture / "target_uv.npy")[32:224])
    args = ["image", "--source", str(tmp_path / "s.png"), "--source-uv", str(tmp_path / "s.npy"),
            "--target-uv", str(tmp_path / "t.npy"), "--out", str(tmp_path / "o.png"),
            "--dump-stages", str(tmp_path / "d.npz")]
    args += ["--checkpoint-dir", str(coordinpaint_dir())] if learned else ["--weight-free"]
    assert main(args) == 0
    stages = np.load(tmp_path / "d.npz")
    assert stages["pred_img"].shape == (3, 192, 256) and stages["source_xy_textures"].shape == (2, 192, 256)
    assert cv2.imread(str(tmp_path / "o.png")).shape == (192, 256, 3)
    grid = stages["inpainter_input"][3:5]  # the meshgrid: x along the width, y along the height
    np.testing.assert_allclose(grid[0, 0, [0, -1]], [-1, 1])
    np.testing.assert_allclose(grid[1, [0, -1], 0], [-1, 1])
    for value in stages.values():
        assert np.isfinite(value).all()


def test_atomic_output_removes_temporaries_of_dead_writers_only(tmp_path):
    import os

    from retarget.io.atomic import atomic_output, write_bytes_atomic

    dead = tmp_path / ".clip.999999999-abcd1234.part.mp4"  # no such process
    alive = tmp_path / f".clip.{os.getpid()}-efgh5678.part.mp4"  # a concurrent writer (us)
    dead.write_bytes(b"x")
    alive.write_bytes(b"x")
    with atomic_output(tmp_path / "other.mp4") as tmp:
        tmp.write_bytes(b"data")
    assert not dead.exists() and alive.exists()
    assert write_bytes_atomic(tmp_path / "sub" / "a.txt", "é", make_parents=True).read_bytes() == "é".encode()
