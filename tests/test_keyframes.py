"""DensePose keyframes: IUV carried by flow between keyframes (densepose_adapter.keyframes) and the
``--densepose-every`` stage of the pipeline (retarget.pipeline.keyframes)."""

from __future__ import annotations

import itertools

import cv2
import numpy as np
import pytest

from densepose_adapter.keyframes import KeyframeSettings, carry_iuv, parse_every, propagate
from densepose_adapter.precomputed import PrecomputedIUV
from densepose_adapter.types import DensePoseResult
from retarget.cli import main
from retarget.errors import UsageError
from retarget.io.video import iter_frames
from retarget.pipeline.densepose_stage import FrameDensePose
from retarget.pipeline.job import VideoJob, driver_densepose
from retarget.pipeline.keyframes import KeyframeDensePose, check_every, with_keyframes
from retarget.pipeline.temporal import FilteredDensePose
from retarget.pipeline.video import VideoOptions
from tests.conftest import REPO, one_error_line

DRIVER = REPO / "examples" / "driver.mp4"
SIDECAR = REPO / "examples" / "driver.iuv"
H, W = 96, 128
STEP = (2.6, 1.4)  # person motion per frame (dx, dy), sub-pixel on purpose


def _texture(seed: int, shape=(H, W)) -> np.ndarray:
    noise = np.random.default_rng(seed).integers(0, 256, shape).astype(np.float32)
    return np.clip(cv2.GaussianBlur(noise, (0, 0), 3.0) * 4 - 384, 0, 255).astype(np.uint8)


def _person_iuv() -> np.ndarray:
    """A 'person' (ellipse, 4 parts in quadrants, U/V ramps) on a canvas twice the frame size."""
    iuv = np.zeros((2 * H, 2 * W, 3), np.uint8)
    cy, cx = H, W
    yy, xx = np.mgrid[: 2 * H, : 2 * W]
    inside = ((yy - cy) / 30.0) ** 2 + ((xx - cx) / 18.0) ** 2 <= 1
    iuv[..., 0] = np.where(inside, 1 + (yy > cy) * 2 + (xx > cx), 0)
    iuv[..., 1] = np.where(inside, np.clip((xx - cx + 18) * 7, 0, 255), 0)
    iuv[..., 2] = np.where(inside, np.clip((yy - cy + 30) * 4, 0, 255), 0)
    return iuv


def _shift(image: np.ndarray, dx: float, dy: float, nearest: bool) -> np.ndarray:
    """``image`` (canvas 2H × 2W, centred) moved by (dx, dy) and cut to H × W around (W/2, H/2)."""
    m = np.float32([[1, 0, dx - W / 2], [0, 1, dy - H / 2]])
    return cv2.warpAffine(image, m, (W, H), flags=cv2.INTER_NEAREST if nearest else cv2.INTER_LINEAR)


def _moving_clip(n: int, cut_at: int | None = None):
    """Grey frames + true IUV of a textured person moving by :data:`STEP` over a still textured background."""
    person_iuv, skin = _person_iuv(), _texture(1, (2 * H, 2 * W))
    background = _texture(2)
    greys, iuvs = [], []
    for t in range(n):
        dx, dy = STEP[0] * t - 12, STEP[1] * t - 6
        iuv = _shift(person_iuv, dx, dy, nearest=True)
        body = _shift(skin, dx, dy, nearest=False)
        mask = _shift((person_iuv[..., 0] > 0).astype(np.float32), dx, dy, nearest=False)
        grey = (mask * body + (1 - mask) * background).astype(np.uint8)
        if cut_at is not None and t >= cut_at:  # another scene, nobody in it
            grey, iuv = 255 - _texture(7 + t), np.zeros_like(iuv)
        greys.append(grey)
        iuvs.append(iuv)
    return greys, iuvs


def _run(greys, iuvs, settings, calls=None):
    calls = [] if calls is None else calls

    def densepose(t):
        calls.append(t)
        return DensePoseResult.from_iuv(iuvs[t])

    return list(propagate(((t, g) for t, g in enumerate(greys)), densepose, settings)), calls


def _off(labels: np.ndarray, truth: np.ndarray, radius: int) -> int:
    """Pixels whose label does not occur in ``truth`` within ``radius`` px of them."""
    kernel = np.ones((2 * radius + 1, 2 * radius + 1), np.uint8)
    ok = np.zeros(labels.shape, bool)
    for label in np.unique(labels):
        ok |= (labels == label) & cv2.dilate((truth == label).astype(np.uint8), kernel).astype(bool)
    return int((~ok).sum())


def test_known_translation_is_carried_within_one_pixel():
    greys, iuvs = _moving_clip(9)
    out, calls = _run(greys, iuvs, KeyframeSettings(every=4))
    assert calls == [0, 4, 8]
    assert [t for t, _ in out] == list(range(9))
    for t, carried in out:
        truth = iuvs[t]
        if carried.keyframe:
            np.testing.assert_array_equal(carried.result.iuv, truth)
            continue
        labels = carried.result.iuv[..., 0]
        person = int((truth[..., 0] > 0).sum())
        # each carried pixel's label is found in the truth within 1 px of it, but for a few silhouette
        # pixels (DIS smooths the flow across the motion boundary): those within 3 px
        assert _off(labels, truth[..., 0], 1) <= 0.04 * person, t
        assert _off(labels, truth[..., 0], 3) == 0, t
        border = cv2.dilate(truth[..., 0], np.ones((3, 3), np.uint8)) != cv2.erode(truth[..., 0], np.ones((3, 3),
                                                                                                       np.uint8))
        # the carried person sits where the true one is (centroid within 1 px), U/V follow it
        ys, xs = np.nonzero(labels)
        ty, tx = np.nonzero(truth[..., 0])
        assert abs(xs.mean() - tx.mean()) < 1 and abs(ys.mean() - ty.mean()) < 1
        core = cv2.erode((truth[..., 0] > 0).astype(np.uint8), np.ones((5, 5), np.uint8)).astype(bool) & ~border
        du = np.abs(carried.result.iuv[..., 1].astype(int) - truth[..., 1])[core]
        assert np.median(du) <= 7  # U rises 7 per pixel: within 1 px
        # the box moved with the person
        box = carried.result.boxes[0]
        want = DensePoseResult.from_iuv(truth).boxes[0]
        assert np.abs(box - want).max() <= 2.0


def test_without_flow_the_keyframe_would_be_off():
    """The check above can fail: the keyframe held still misses the moved person by > 1 px."""
    greys, iuvs = _moving_clip(3)
    held = carry_iuv(iuvs[0], np.zeros((H, W, 2), np.float32))
    assert _off(held[..., 0], iuvs[2][..., 0], 1) > 0.04 * (iuvs[2][..., 0] > 0).sum()


def test_a_cut_forces_a_keyframe_and_is_not_fused_across():
    greys, iuvs = _moving_clip(10, cut_at=5)
    out, calls = _run(greys, iuvs, KeyframeSettings(every=8))
    assert 5 in calls
    reasons = {t: c.reason for t, c in out if c.keyframe}
    assert reasons[5] == "cut"
    for t, carried in out:
        if t < 5:
            assert carried.result.has_person  # not replaced by the empty scene after the cut
        else:
            assert not carried.result.has_person


def test_propagation_is_deterministic():
    greys, iuvs = _moving_clip(8)
    first, _ = _run(greys, iuvs, KeyframeSettings(every=None))
    second, _ = _run(greys, iuvs, KeyframeSettings(every=None))
    for (_, a), (_, b) in zip(first, second):
        assert a.keyframe == b.keyframe
        np.testing.assert_array_equal(a.result.iuv, b.result.iuv)
        np.testing.assert_array_equal(a.result.boxes, b.result.boxes)


def test_parse_and_check_every():
    assert parse_every("4") == 4 and parse_every("auto") is None and parse_every(1) == 1
    for bad in ("0", "-3", "x", "1.5"):
        with pytest.raises(UsageError, match="--densepose-every"):
            check_every(bad)
    with pytest.raises(UsageError):
        check_every("99")
    with pytest.raises(ValueError):
        KeyframeSettings(every=0)


# -- the pipeline stage -----------------------------------------------------------------------------

N = 10


class _CountingIUV(PrecomputedIUV):
    def __init__(self, path):
        super().__init__(path)
        self.read = []

    def get(self, index, image_hw):
        self.read.append(index)
        return super().get(index, image_hw)


def _keyframe_stage(every):
    backend = _CountingIUV(SIDECAR)
    return with_keyframes(FrameDensePose(backend), DRIVER, every), backend


def test_default_is_today_s_stage():
    assert VideoOptions().densepose_every == "1"
    raw = FrameDensePose(PrecomputedIUV(SIDECAR))
    assert with_keyframes(raw, DRIVER, 1) is raw
    stage = driver_densepose(VideoJob(source=REPO / "examples" / "source.jpg", driver=DRIVER, driver_iuv=SIDECAR))
    assert isinstance(stage, FilteredDensePose) and type(stage.inner) is FrameDensePose


def test_stage_reads_only_keyframes_caches_flags_and_is_deterministic():
    stage, backend = _keyframe_stage(4)
    assert isinstance(stage, KeyframeDensePose)
    frames = list(itertools.islice(iter_frames(DRIVER), N))
    streamed = [(f.index, r.iuv.copy()) for f, r in stage.stream(iter(frames), batch_size=4)]
    assert [i for i, _ in streamed] == list(range(N))
    assert backend.read == stage.keyframes and stage.keyframes[:3] == [0, 4, 8] and stage.keyframes[-1] == N - 1
    flags = [stage.cache.load_entry(i)[1] for i in range(N)]
    assert flags == [i in stage.keyframes for i in range(N)]
    # pass 2 (a new stage): from the cache, nothing read again
    again, backend2 = _keyframe_stage(4)
    results = again.results(list(range(N)), [f.rgb for f in frames])
    assert backend2.read == []
    for (_, want), got in zip(streamed, results):
        np.testing.assert_array_equal(got.iuv, want)
    # without the cache: the same results again
    for path in stage.cache.folder.glob("*.npz"):
        path.unlink()
    fresh, _ = _keyframe_stage(4)
    for (_, want), (_, got) in zip(streamed, fresh.stream(iter(frames), batch_size=1)):
        np.testing.assert_array_equal(got.iuv, want)
    # another K: another cache folder
    assert _keyframe_stage("auto" and None)[0].cache.folder != stage.cache.folder


def test_filter_cache_key_includes_the_keyframes():
    raw = FrameDensePose(PrecomputedIUV(SIDECAR))
    from retarget.pipeline.temporal import with_temporal_filter

    plain = with_temporal_filter(raw, DRIVER, 2)
    keyed = with_temporal_filter(with_keyframes(FrameDensePose(PrecomputedIUV(SIDECAR)), DRIVER, 3), DRIVER, 2)
    assert plain.cache.folder != keyed.cache.folder


@pytest.mark.parametrize("command", ["video", "frames", "densepose"])
def test_bad_interval_is_a_usage_error(command, tmp_path, capsys):
    args = {"video": ["video", "--source", str(REPO / "examples" / "source.jpg"), "--driver", str(DRIVER),
                      "--weight-free", "-o", str(tmp_path / "out.mp4")],
            "frames": ["frames", "--driver", str(DRIVER), "--out", str(tmp_path / "f"), "--only-densepose"],
            "densepose": ["densepose", str(DRIVER), "--iuv", str(SIDECAR), "--out", str(tmp_path / "d")]}[command]
    assert main(args + ["--densepose-every", "0"]) == 2
    assert "--densepose-every 0" in one_error_line(capsys)
    assert not list(tmp_path.iterdir())


def test_batch_jobs_file_setting_is_checked(tmp_path, capsys):
    jobs = tmp_path / "jobs.csv"
    jobs.write_text(f"source,driver,densepose_every\n{REPO / 'examples' / 'source.jpg'},{DRIVER},0\n")
    args = ["batch", "--jobs", str(jobs), "--weight-free", "--out-dir", str(tmp_path / "o"), "--dry-run"]
    assert main(args) == 1  # a bad row is a job that cannot run (the others would)
    assert "--densepose-every 0" in capsys.readouterr().err
    assert main(args + ["--fail-fast"]) == 2
    assert "--densepose-every 0" in one_error_line(capsys)


def test_densepose_command_with_keyframes(tmp_path, capsys):
    out = tmp_path / "iuv.npz"
    assert main(["densepose", str(DRIVER), "--iuv", str(SIDECAR), "--out", str(out), "--max-frames", "9",
                 "--densepose-every", "3", "-q"]) == 0
    assert "DensePose on 4 keyframe(s)" in capsys.readouterr().out
    with np.load(out) as data:
        iuv = data["iuv"]
    assert iuv.shape[0] == 9
    want = PrecomputedIUV(SIDECAR).get(3, iuv.shape[1:3]).iuv
    np.testing.assert_array_equal(iuv[3], want)  # keyframes are DensePose's own


def _render(photo, driver, out, every, cache, monkeypatch):
    from retarget.pipeline.job import run_video_job

    monkeypatch.setenv("RETARGET_CACHE_DIR", str(cache))
    frames: list[np.ndarray] = []
    job = VideoJob(source=photo, driver=driver, output=out, size=64, overwrite=True,
                   options=VideoOptions(quiet=True, densepose_every=every))
    run_video_job(job, None, on_frame=lambda i, rgb: frames.append(rgb.copy()))
    return frames


def test_video_with_keyframes_is_deterministic_with_and_without_the_cache(tmp_path, monkeypatch):
    from tests.media import make_driver, sample_source

    photo, _ = sample_source(tmp_path)
    driver = tmp_path / "dance.mp4"
    make_driver(driver, n=10)
    default = _render(photo, driver, tmp_path / "a.mp4", "1", tmp_path / "c1", monkeypatch)
    first = _render(photo, driver, tmp_path / "b.mp4", "3", tmp_path / "c2", monkeypatch)
    cached = _render(photo, driver, tmp_path / "b.mp4", "3", tmp_path / "c2", monkeypatch)
    fresh = _render(photo, driver, tmp_path / "b.mp4", "3", tmp_path / "c3", monkeypatch)
    assert len(first) == len(default) == 10
    for a, b, c in zip(first, cached, fresh):
        np.testing.assert_array_equal(a, b)
        np.testing.assert_array_equal(a, c)
    # close to every-frame DensePose (the temporal filter, the crop smoothing and the scene plate mix
    # frames, so even keyframes differ a little)
    err = np.mean([np.abs(a.astype(int) - b).mean() for a, b in zip(first, default)])
    assert 0 < err < 2.0, err


def test_flow_runs_on_one_opencv_thread_and_restores_the_count():
    from densepose_adapter import keyframes

    seen = []
    real_create = keyframes._dis

    class Spy:
        def __init__(self):
            self.inner = real_create()

        def calc(self, a, b, flow):
            seen.append(cv2.getNumThreads())
            return self.inner.calc(a, b, flow)

    before = cv2.getNumThreads()
    greys, _ = _moving_clip(2)
    flow = keyframes.dense_flow(greys[1], greys[0], dis=Spy())
    assert seen == [1] and cv2.getNumThreads() == before
    assert flow.shape == (H, W, 2) and flow.dtype == np.float32


# -- live carrying on the person's window (KeyframeSettings.crop) ---------------------------------------

def _carry_forward(greys, iuvs, settings):
    """Keyframe 0, then every later frame carried forward from it (lenient: a live stream's carry)."""
    from densepose_adapter.keyframes import KeyframePropagator

    prop = KeyframePropagator(settings)
    prop.keyframe(greys[0], DensePoseResult.from_iuv(iuvs[0]))
    return [prop.carry(g, lenient=True) for g in greys[1:]]


def _twice(greys, iuvs):
    """The clip at twice the size (the person 120 px tall, moving 5.2 px a frame)."""
    size = (2 * W, 2 * H)
    return ([cv2.resize(g, size, interpolation=cv2.INTER_LINEAR) for g in greys],
            [cv2.resize(i, size, interpolation=cv2.INTER_NEAREST) for i in iuvs])


@pytest.mark.parametrize("flow_side, frames", [(512, 3), (128, 2)])  # 128: the flow at half resolution
def test_window_carry_follows_a_known_translation_within_one_pixel(flow_side, frames):
    """Carried forward from one keyframe (a live stream's carry): each carried pixel's label is found in
    the truth within 1 px of it, but for a few silhouette pixels; U follows the person within 1 px."""
    from densepose_adapter.keyframes import reduction

    greys, iuvs = _twice(*_moving_clip(frames + 1))
    settings = KeyframeSettings(every=None, crop=True, flow_side=flow_side)
    assert reduction(greys[0].shape, flow_side) == (1 if flow_side == 512 else 2)
    for t, carried in enumerate(_carry_forward(greys, iuvs, settings), start=1):
        assert carried is not None, t
        truth = iuvs[t]
        labels = carried.result.iuv[..., 0]
        person = int((truth[..., 0] > 0).sum())
        assert _off(labels, truth[..., 0], 1) <= 0.04 * person, t
        assert _off(labels, truth[..., 0], 3) <= 0.005 * person, t
        # U, V as the keyframe moved by the true motion (U rises 3.5 per pixel at this size)
        motion = np.broadcast_to(np.float32([-2 * STEP[0] * t, -2 * STEP[1] * t]), (*labels.shape, 2))
        ideal = carry_iuv(iuvs[0], np.ascontiguousarray(motion))
        core = cv2.erode((truth[..., 0] > 0).astype(np.uint8), np.ones((9, 9), np.uint8)).astype(bool)
        core &= labels == ideal[..., 0]
        du = np.abs(carried.result.iuv[..., 1:].astype(int) - ideal[..., 1:])[core]
        assert np.median(du) <= 3.5, t
        box = carried.result.boxes[0]
        assert np.abs(box - DensePoseResult.from_iuv(truth).boxes[0]).max() <= 2.0, t


def test_window_carry_held_still_would_be_off():
    """The check above can fail: the keyframe held still misses the person 2 frames later by > 1 px."""
    greys, iuvs = _twice(*_moving_clip(3))
    held = carry_iuv(iuvs[0], np.zeros((*greys[0].shape, 2), np.float32))
    assert _off(held[..., 0], iuvs[2][..., 0], 1) > 0.04 * (iuvs[2][..., 0] > 0).sum()


def test_window_carry_matches_the_whole_frame_carry_on_a_small_frame():
    """A frame below the smallest window is one window: the same person as the whole-frame path's."""
    greys, iuvs = _moving_clip(4)
    whole = _carry_forward(greys, iuvs, KeyframeSettings(every=None))
    window = _carry_forward(greys, iuvs, KeyframeSettings(every=None, crop=True, flow_side=256))
    for a, b in zip(whole, window):
        fa, fb = a.result.iuv[..., 0] > 0, b.result.iuv[..., 0] > 0
        assert np.count_nonzero(fa != fb) <= 0.03 * fa.sum()


def test_window_carry_on_a_large_frame_touches_only_the_window():
    """The person in a corner of a big frame: the carried person is where it should be, nothing outside."""
    greys, iuvs = _moving_clip(3)
    big_g = [np.pad(g, ((0, 300), (0, 400)), mode="reflect") for g in greys]
    big_i = [np.pad(i, ((0, 300), (0, 400), (0, 0))) for i in iuvs]
    carried = _carry_forward(big_g, big_i, KeyframeSettings(every=None, crop=True, flow_side=256))
    for t, c in enumerate(carried, start=1):
        labels = c.result.iuv[..., 0]
        assert c.result.iuv.shape == big_i[t].shape
        assert not labels[200:].any() and not labels[:, 300:].any()
        assert _off(labels, big_i[t][..., 0], 1) <= 0.04 * (big_i[t][..., 0] > 0).sum()


def test_window_carry_still_finds_a_cut_and_is_deterministic():
    greys, iuvs = _moving_clip(6, cut_at=3)
    settings = KeyframeSettings(every=None, crop=True)
    first = _carry_forward(greys, iuvs, settings)
    assert [c is None for c in first] == [False, False, True, True, True]
    again = _carry_forward(greys, iuvs, settings)
    for a, b in zip(first[:2], again[:2]):
        np.testing.assert_array_equal(a.result.iuv, b.result.iuv)


def test_key_preparation_and_window_give_the_same_carry():
    """``carry_iuv`` / ``fix_silhouette`` with a prepared ``KeyIUV`` (and a window of it) equal the plain calls."""
    from densepose_adapter.keyframes import KeyIUV, dense_flow, fix_silhouette

    greys, iuvs = _moving_clip(3)
    back, fwd = dense_flow(greys[2], greys[0]), dense_flow(greys[0], greys[2])
    plain = carry_iuv(iuvs[0], back)
    fix_silhouette(plain, iuvs[0], fwd)
    key = KeyIUV(iuvs[0])
    prepared = carry_iuv(iuvs[0], back, key)
    fix_silhouette(prepared, iuvs[0], fwd, key)
    np.testing.assert_array_equal(prepared, plain)
    y0, y1, x0, x1 = key.box
    y0, y1, x0, x1 = max(0, y0 - 8), min(H, y1 + 8), max(0, x0 - 8), min(W, x1 + 8)
    part = key.window(y0, y1, x0, x1)
    moved = carry_iuv(part.iuv, np.ascontiguousarray(back[y0:y1, x0:x1]), part)
    fix_silhouette(moved, part.iuv, np.ascontiguousarray(fwd[y0:y1, x0:x1]), part)
    inside = np.zeros((H, W), bool)
    inside[y0:y1, x0:x1] = True
    assert not plain[~inside].any()  # the person stayed inside the window, so the window's carry is all of it
    np.testing.assert_array_equal(moved, plain[y0:y1, x0:x1])


def test_guided_flow_recovers_a_translation_and_follows_a_large_one_from_a_guess():
    from densepose_adapter.keyframes import _dis, guided_flow

    texture = _texture(3, (128, 160))
    moved = np.roll(texture, (3, -5), axis=(0, 1))  # content moves by (dx, dy) = (-5, +3): g1(x) = g0(x - d)
    zero = np.zeros((128, 160, 2), np.float32)
    for n in (1, 2):
        flow = guided_flow(texture, moved, n, _dis(), zero)
        core = flow[24:-24, 24:-24].reshape(-1, 2)
        assert np.abs(np.median(core, axis=0) - [-5, 3]).max() < 0.5, n
    far = np.roll(texture, (0, 36), axis=(0, 1))
    guess = np.zeros_like(zero)
    guess[..., 0] = 34  # the previous frame's flow, 2 px short
    flow = guided_flow(texture, far, 2, _dis(), guess)
    assert abs(np.median(flow[24:-24, 40:-24, 0]) - 36) < 0.5


def test_window_span_is_rounded_wide_enough_and_inside_the_frame():
    from densepose_adapter.keyframes import MIN_WINDOW, _span

    for a, b, size in [(10, 50, 480), (-20, 50, 480), (400, 470, 480), (0, 360, 360), (100, 300, 480),
                       (-5, 200, 120), (30, 31, 1000)]:
        lo, hi = _span(a, b, size)
        assert 0 <= lo < hi <= size
        assert hi - lo >= min(size, MIN_WINDOW)
        assert lo <= max(0, a) and hi >= min(size, b)
        assert lo % 8 == 0 and (hi % 8 == 0 or hi == size)


def test_window_settings_change_the_cache_key_only_when_on():
    assert KeyframeSettings(every=4).key() == KeyframeSettings(every=4, check_side=64).key()
    assert KeyframeSettings(every=4, crop=True).key() != KeyframeSettings(every=4).key()
