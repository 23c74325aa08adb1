"""DensePose R-CNN port: architecture vs the official key/shape list, config parsing, strict and safe
loading, backends and the ``retarget densepose`` command."""

from __future__ import annotations

import json
import pickle
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch

from densepose_adapter.composite import composite_iuv
from densepose_adapter.rcnn import (
    ConfigError,
    DensePoseRCNN,
    config_from_overrides,
    convert_detectron2_densepose_state,
    load_config,
    load_detectron2_state,
    preset,
    read_checkpoint,
    resized_shape,
)
from densepose_adapter.types import DensePoseBackend, DensePoseResult
from retarget.cli.app import main
from retarget.errors import UsageError, WeightsError
from densepose_adapter.safe_pickle import UnsafePickleError, load_restricted_pickle
from tests.assets import densepose_dir
from tests.conftest import DENSEPOSE_FIXTURE, require_shared

FIX = DENSEPOSE_FIXTURE


@pytest.fixture(scope="module")
def fixture_dir() -> Path:
    return require_shared(FIX)


@pytest.fixture(scope="module")
def tiny_dir() -> Path:
    """A generated tiny checkpoint (official format), its meta.json and an image.png (tests/assets.py)."""
    return densepose_dir()


@pytest.fixture(scope="module")
def expected(fixture_dir) -> dict:
    return dict(np.load(fixture_dir / "expected.npz"))


@pytest.fixture(scope="module")
def tiny_ckpt(tiny_dir) -> dict:
    return load_restricted_pickle(tiny_dir / "model_tiny.pkl")


def assert_iuv_matches(ours: np.ndarray, golden: np.ndarray) -> None:
    """Equal up to float rounding: U/V within 1 level, and at most 0.5 % of person pixels differing at all
    (the CPU's instruction set changes the last bits of the convolutions; tests/test_densepose_parity.py
    uses the same pixel tolerance)."""
    assert ours.shape == golden.shape
    diff = np.abs(ours.astype(int) - golden.astype(int))
    person = (ours[..., 0] > 0) | (golden[..., 0] > 0)
    assert diff.any(axis=-1).sum() <= 0.005 * max(1, int(person.sum()))
    assert diff[..., 1:][(diff[..., 0] == 0)].max(initial=0) <= 1


def _image(fixture_dir: Path) -> np.ndarray:
    return cv2.imread(str(fixture_dir / "image.png"), cv2.IMREAD_COLOR)


# -- architecture ------------------------------------------------------------------------------
@pytest.mark.parametrize("name", ["r50", "r101"])
def test_full_size_state_dict_equals_official_shapes(fixture_dir, name):
    official = json.loads((fixture_dir / "official_shapes.json").read_text())
    cfg = preset(name)
    with torch.device("meta"):
        model = DensePoseRCNN(cfg)
    ours = {k: list(v.shape) for k, v in model.state_dict().items()}
    ref = official[cfg.name]
    assert sorted(ours) == sorted(ref)
    assert ours == ref


def test_tiny_checkpoint_keys_match_fixture_config(tiny_dir, tiny_ckpt):
    with torch.device("meta"):
        model = DensePoseRCNN(load_config(tiny_dir / "meta.json"))
    ours = {k: tuple(v.shape) for k, v in model.state_dict().items()}
    assert ours == {k: tuple(v.shape) for k, v in tiny_ckpt["model"].items()}


# -- config ------------------------------------------------------------------------------------
def test_config_presets_and_overrides(tiny_dir):
    assert preset("r50").depth == 50 and preset("r101").depth == 101
    assert preset("densepose_rcnn_R_101_FPN_s1x").depth == 101
    cfg = load_config(tiny_dir / "meta.json")
    meta = json.loads((tiny_dir / "meta.json").read_text())
    assert cfg.fpn_out_channels == meta["overrides"]["MODEL.FPN.OUT_CHANNELS"]
    assert cfg.detections_per_image == meta["overrides"]["TEST.DETECTIONS_PER_IMAGE"]
    assert cfg.dp_pooler_type == "ROIAlign" and cfg.box_pooler_type == "ROIAlign"
    assert set(meta["overrides"]) <= set(cfg.overridden)
    c = config_from_overrides({"SOLVER.BASE_LR": 0.1, "MODEL.ANCHOR_GENERATOR.SIZES": [[16], [32], [64],
                               [128], [256]], "MODEL.RESNETS.DEPTH": 101}, base="r50")
    assert c.depth == 101 and c.anchor_sizes[0] == (16,)
    with pytest.raises(ConfigError, match="unknown"):
        config_from_overrides({"MODEL.NOT_AN_OPTION": 1})
    with pytest.raises(ConfigError, match="not supported"):
        config_from_overrides({"MODEL.RESNETS.NORM": "GN"})
    with pytest.raises(ConfigError, match="DEPTH"):
        config_from_overrides({"MODEL.RESNETS.DEPTH": 34})
    with pytest.raises(ConfigError):
        preset("r18")


def test_config_json_without_overrides_key(tmp_path):
    p = tmp_path / "c.json"
    p.write_text(json.dumps({"MODEL.ROI_HEADS.SCORE_THRESH_TEST": 0.5}))
    assert load_config(p).score_thresh_test == 0.5
    p.write_text("{not json")
    with pytest.raises(ConfigError, match="JSON"):
        load_config(p)


@pytest.mark.parametrize("hw,expect", [((256, 256), (800, 800)), ((720, 1280), (750, 1333)),
                                        ((100, 400), (333, 1333)), ((480, 360), (1067, 800))])
def test_resized_shape(hw, expect):
    assert resized_shape(*hw, 800, 1333) == expect


# -- loading -----------------------------------------------------------------------------------
def test_loader_drops_non_parameters(tiny_ckpt):
    sd = dict(tiny_ckpt["model"])
    sd["pixel_mean"] = np.zeros((3, 1, 1), np.float32)
    sd["proposal_generator.anchor_generator.cell_anchors.0"] = np.zeros((3, 4), np.float32)
    sd["backbone.bottom_up.stem.conv1.norm.num_batches_tracked"] = np.zeros((), np.int64)
    out = convert_detectron2_densepose_state({"model": sd, "__author__": "x"})
    assert set(out) == set(tiny_ckpt["model"])
    assert all(v.dtype == torch.float32 for v in out.values())


def _tiny_model(tiny_dir):
    return DensePoseRCNN(load_config(tiny_dir / "meta.json"))


def test_loader_strict_errors(tiny_dir, tiny_ckpt):
    state = convert_detectron2_densepose_state(tiny_ckpt)
    model = _tiny_model(tiny_dir)
    missing = dict(state)
    missing.pop("roi_heads.box_head.fc1.weight")
    with pytest.raises(WeightsError, match="1 missing .*fc1.weight"):
        load_detectron2_state(model, missing)
    extra = dict(state, **{"roi_heads.mask_head.x": torch.zeros(1)})
    with pytest.raises(WeightsError, match="unexpected .*mask_head"):
        load_detectron2_state(model, extra)
    shaped = dict(state, **{"roi_heads.box_head.fc2.bias": torch.zeros(3)})
    with pytest.raises(WeightsError, match="other shapes"):
        load_detectron2_state(model, shaped)
    deeper = dict(state, **{"backbone.bottom_up.res4.6.conv1.weight": torch.zeros(1)})
    with pytest.raises(WeightsError, match="r101"):
        load_detectron2_state(model, deeper)
    with pytest.raises(WeightsError, match="other shapes"):  # the tiny file into the full-size model
        load_detectron2_state(DensePoseRCNN(preset("r50")), state)


def test_manifest_loader_entry_point(tiny_dir):
    """``densepose_adapter.rcnn.load`` (named by the weights manifest) builds and loads strictly."""
    from densepose_adapter.rcnn import load

    model = load(tiny_dir / "model_tiny.pkl", tiny_dir / "meta.json")
    assert model.cfg.fpn_out_channels == 32
    with pytest.raises(WeightsError, match="does not match"):
        load(tiny_dir / "model_tiny.pkl")  # tiny widths vs the R50 s1x default


def test_read_checkpoint_refuses_unsafe_and_bad_files(tmp_path):
    class Evil:
        def __reduce__(self):
            return (print, ("pwned",))

    bad = tmp_path / "evil.pkl"
    bad.write_bytes(pickle.dumps({"model": {"a": Evil()}}))
    with pytest.raises(UnsafePickleError):
        read_checkpoint(bad)
    notdict = tmp_path / "list.pkl"
    notdict.write_bytes(pickle.dumps([1, 2]))
    with pytest.raises(WeightsError, match="dict"):
        read_checkpoint(notdict)
    with pytest.raises(WeightsError, match="not found"):
        read_checkpoint(tmp_path / "nope.pkl")
    trunc = tmp_path / "trunc.pkl"
    trunc.write_bytes(pickle.dumps({"model": {"a": np.zeros(3)}})[:20])
    with pytest.raises(WeightsError):
        read_checkpoint(trunc)


# -- model variants on a non-square image (code paths, no reference) ----------------------------
@pytest.mark.parametrize("overrides", [
    {},
    {"MODEL.ROI_DENSEPOSE_HEAD.DECODER_ON": False, "MODEL.ROI_DENSEPOSE_HEAD.POOLER_TYPE": "ROIAlignV2",
     "MODEL.RESNETS.NUM_GROUPS": 2, "MODEL.FPN.FUSE_TYPE": "avg",
     "MODEL.ROI_DENSEPOSE_HEAD.NUM_STACKED_CONVS": 2, "MODEL.ROI_DENSEPOSE_HEAD.POOLER_RESOLUTION": 14,
     "INPUT.MIN_SIZE_TEST": 160, "MODEL.ROI_BOX_HEAD.CLS_AGNOSTIC_BBOX_REG": True},
])
def test_variants_run_on_non_square_image(overrides):
    torch.manual_seed(0)
    small = {"MODEL.RESNETS.STEM_OUT_CHANNELS": 8, "MODEL.RESNETS.RES2_OUT_CHANNELS": 16,
             "MODEL.RESNETS.WIDTH_PER_GROUP": 4, "MODEL.FPN.OUT_CHANNELS": 16, "MODEL.ROI_BOX_HEAD.FC_DIM": 16,
             "MODEL.ROI_DENSEPOSE_HEAD.CONV_HEAD_DIM": 16, "MODEL.ROI_DENSEPOSE_HEAD.DECODER_CONV_DIMS": 8,
             "MODEL.ROI_DENSEPOSE_HEAD.DECODER_NUM_CLASSES": 8, "MODEL.ROI_HEADS.SCORE_THRESH_TEST": 0.0,
             "TEST.DETECTIONS_PER_IMAGE": 4, "INPUT.MIN_SIZE_TEST": 192}
    cfg = config_from_overrides({**small, **overrides})
    model = DensePoseRCNN(cfg)
    rng = np.random.default_rng(0)
    image = rng.integers(0, 255, (90, 150, 3), dtype=np.uint8)
    res = model.predict([image])[0]
    assert res.iuv.shape == (90, 150, 3) and res.boxes.shape[1] == 4
    assert len(res.instances) == len(res.scores) <= 4
    for inst in res.instances:
        x0, y0, x1, y1 = inst.box
        assert 0 <= x0 <= x1 <= 150 and 0 <= y0 <= y1 <= 90
        assert inst.uv.shape == (2,) + inst.labels.shape


def test_composite_overlap_rule():
    lab_a = np.full((4, 4), 3, np.uint8)
    lab_b = np.zeros((4, 4), np.uint8)
    lab_b[1:3, 1:3] = 7
    uv = np.full((2, 4, 4), 0.5, np.float32)
    uv_hi = np.full((2, 4, 4), 2.0, np.float32)  # clipped to 255
    boxes = np.array([[1.9, 1.2, 5.9, 5.2], [2.5, 2.5, 6.5, 6.5]], np.float32)
    iuv = composite_iuv((8, 8), boxes, np.array([0.9, 0.95]), [lab_a, lab_b], [uv, uv_hi])
    assert iuv[1, 1, 0] == 3 and tuple(iuv[1, 1, 1:]) == (127, 127)
    assert iuv[3, 3, 0] == 7 and tuple(iuv[3, 3, 1:]) == (255, 255)  # higher score on top
    assert iuv[2, 2, 0] == 3  # background of the top instance does not erase the other
    iuv2 = composite_iuv((8, 8), boxes, np.array([0.99, 0.95]), [lab_a, lab_b], [uv, uv_hi])
    assert iuv2[3, 3, 0] == 3


# -- backends ----------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def backend(fixture_dir):
    from densepose_adapter.torchvision_backend import TorchvisionDensePoseBackend

    return TorchvisionDensePoseBackend(weights=fixture_dir / "model_tiny.pkl", config=fixture_dir / "meta.json")


def test_torchvision_backend(backend, fixture_dir, expected):
    assert isinstance(backend, DensePoseBackend) and backend.name == "torchvision"
    img = _image(fixture_dir)
    res = backend.predict([img, img[:, ::-1].copy()])
    assert len(res) == 2 and all(isinstance(r, DensePoseResult) for r in res)
    assert_iuv_matches(res[0].iuv, expected["iuv_composite"])
    np.testing.assert_allclose(res[0].boxes, expected["boxes"], atol=1e-3)
    assert res[0].has_person and len(res[0].instances) == len(expected["scores"])
    assert backend.cache_key() == backend.cache_key()


def test_backend_settings_change_cache_key_and_threshold(tiny_dir):
    from densepose_adapter.torchvision_backend import TorchvisionDensePoseBackend

    kw = {"weights": tiny_dir / "model_tiny.pkl", "config": tiny_dir / "meta.json"}
    a = TorchvisionDensePoseBackend(**kw)
    b = TorchvisionDensePoseBackend(**kw, densepose_size=512)
    c = TorchvisionDensePoseBackend(**kw, min_score=0.9999)  # above every score of the tiny model
    assert len({a.cache_key(), b.cache_key(), c.cache_key()}) == 3
    assert a.cfg.score_thresh_test == 0.8  # from meta.json
    res = c.predict([_image(tiny_dir)])[0]
    assert res.boxes.shape == (0, 4) and not res.has_person and res.iuv.shape == (256, 256, 3)
    with pytest.raises(UsageError):
        TorchvisionDensePoseBackend(**kw, min_score=1.5)


def test_tracked_mode(tiny_dir):
    from densepose_adapter.torchvision_backend import TorchvisionDensePoseBackend, crop_around

    assert crop_around(np.array([10, 10, 20, 30]), (100, 100), 0.25) == (0, 0, 52, 62)
    img = _image(tiny_dir)
    big = np.zeros((320, 400, 3), np.uint8)
    big[30:286, 100:356] = img
    full = TorchvisionDensePoseBackend(weights=tiny_dir / "model_tiny.pkl", config=tiny_dir / "meta.json")
    ref = full.predict([big])[0]
    tracked = TorchvisionDensePoseBackend(weights=tiny_dir / "model_tiny.pkl",
                                          config=tiny_dir / "meta.json", track=True)
    first, second = tracked.predict([big, big])
    np.testing.assert_array_equal(first.iuv, ref.iuv)  # no previous box: full frame
    assert second.iuv.shape == ref.iuv.shape and second.boxes.shape[1] == 4
    tracked.reset_tracking()
    assert tracked._prev_box is None


def test_detectron2_backend_reports_missing_install():
    from densepose_adapter.detectron2_backend import detectron2_available

    if detectron2_available():
        pytest.skip("detectron2 is installed here")
    from densepose_adapter.backends import make_backend

    with pytest.raises(UsageError, match="pip install"):
        make_backend("detectron2")
    with pytest.raises(UsageError, match="unknown DensePose backend"):
        make_backend("caffe2")


# -- CLI ---------------------------------------------------------------------------------------
def _cli(*args: str) -> int:
    return main(["densepose", *map(str, args)])


def test_cli_image_npz_and_png(fixture_dir, expected, tmp_path, capsys):
    common = ["--weights", fixture_dir / "model_tiny.pkl", "--config", fixture_dir / "meta.json"]
    out = tmp_path / "r.npz"
    assert _cli(fixture_dir / "image.png", "--out", out, *common) == 0
    data = np.load(out)
    assert set(data.files) == {"boxes", "scores", "iuv"}
    assert_iuv_matches(data["iuv"], expected["iuv_composite"])
    np.testing.assert_allclose(data["boxes"], expected["boxes"], atol=1e-3)
    np.testing.assert_allclose(data["scores"], expected["scores"], atol=1e-5)
    assert _cli(fixture_dir / "image.png", "--out", tmp_path / "pngs", *common) == 0
    png = cv2.imread(str(tmp_path / "pngs" / "image_IUV.png"), cv2.IMREAD_UNCHANGED)
    assert_iuv_matches(png, cv2.imread(str(fixture_dir / "expected_IUV.png"), cv2.IMREAD_UNCHANGED))
    assert not list((tmp_path / "pngs").glob(".*.tmp"))


def test_cli_video(tiny_dir, tmp_path):
    img = _image(tiny_dir)
    video = tmp_path / "v.avi"
    writer = cv2.VideoWriter(str(video), cv2.VideoWriter_fourcc(*"MJPG"), 5, (256, 256))
    for _ in range(2):
        writer.write(img)
    writer.release()
    common = ["--weights", tiny_dir / "model_tiny.pkl", "--config", tiny_dir / "meta.json"]
    assert _cli(video, "--out", tmp_path / "frames", *common) == 0
    files = sorted((tmp_path / "frames").glob("v_*_IUV.png"))
    assert [f.name for f in files] == ["v_000000_IUV.png", "v_000001_IUV.png"]
    assert _cli(video, "--out", tmp_path / "v.npz", "--no-track", "--max-frames", 1, *common) == 0
    data = np.load(tmp_path / "v.npz")
    assert data["iuv"].shape == (1, 256, 256, 3) and len(data["frame_index"]) == len(data["scores"])


def test_cli_errors(tiny_dir, tmp_path, capsys):
    assert _cli(tmp_path / "missing.png", "--out", tmp_path / "o.npz") == 1
    assert "file not found" in capsys.readouterr().err
    assert _cli(tiny_dir / "image.png", "--out", tmp_path / "o.npz") == 1
    assert "retarget weights fetch densepose-r50-fpn-s1x" in capsys.readouterr().err
    assert _cli(tiny_dir / "image.png", "--out", tmp_path / "o.npz", "--weights",
                tiny_dir / "model_tiny.pkl", "--config", "r18") == 2
    assert _cli(tiny_dir / "image.png", "--out", tmp_path / "o.npz", "--weights",
                tiny_dir / "model_tiny.pkl", "--config", "r50") == 1
    assert "does not match" in capsys.readouterr().err


def test_default_config_is_r50_s1x():
    cfg = load_config(None)
    assert cfg == preset("r50") and cfg.depth == 50 and cfg.min_size_test == 800
    assert cfg.score_thresh_test == 0.05 and cfg.detections_per_image == 100
    with pytest.raises(ConfigError, match="RES5_DILATION"):
        config_from_overrides({"MODEL.RESNETS.RES5_DILATION": 2})
