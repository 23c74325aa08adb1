"""Benchmark of the temporal IUV filter (issue 15), every figure from one run.

    .venv/bin/python bench/temporal.py [--samples ../shared/samples] [--seed 0] [--repeats 3]

Synthetic DensePose noise on clean IUV sequences, per frame: part labels flipped with probability 0.3
in a band of ±2 px around part borders (the person's outline included; a flipped pixel takes the
label and U, V of a random pixel within 2 px that has another label), Gaussian noise σ = 6/255 on U
and V, and one limb's pixels dropped on 5 % of the frames (single frames, limb chosen at random).

1. Example driver (examples/driver.mp4 + driver.iuv/, 480×360, 60 frames, up to ≈11 px per frame):
   part-label disagreement with the clean IUV on person pixels (clean or estimated person), mean
   |U, V error| (·255) on pixels whose label is right, for noisy, filtered (default settings) and a
   naive fixed-window vote without motion compensation (same window, zero flow).
2. Fast motion: a sample person crossing the frame at 12 px per frame (30 frames): filtered error
   must not exceed noisy error (no lag).
3. Flicker of the final rendered video: a still person (30 frames of one picture), noisy IUV,
   ``retarget video`` weight-free with and without the filter; mean absolute frame-to-frame
   difference (RGB, 0..255) inside the person.
4. Cost: seconds per 480×360 frame of the streaming filter on the example driver (flow + vote + UV),
   best of ``--repeats`` runs, as wall time and as this process's CPU time (all threads). On a shared,
   busy machine the wall time mostly measures waiting for a CPU; the CPU time does not count that
   waiting (it does include every thread's work, so on an idle machine the wall time is lower still).
5. Real DensePose (every folder of ``../shared/real`` with ``rgb/`` + ``iuv/``, and ``--clips``): label
   flicker = the share of person pixels (either frame) whose part label changes from frame t to t + 1
   after motion compensation (DIS flow of the real frames, t + 1 sampled back onto t), for the official
   per-frame IUV and for the filtered IUV (guides from the real frames; offline, as ``retarget video``).
   Boundary error: the filtered labels against the raw ones of the same frame, on pixels within 2 px of
   a part border (the outline included) and inside the parts, and the mean distance (px) of the
   filtered outline from the raw one — what the filter moved where the labels are least certain.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from fractions import Fraction
from pathlib import Path

import cv2
import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

sys.path.insert(0, str(REPO / "bench"))

from densepose_adapter import temporal  # noqa: E402
from densepose_adapter.keyframes import carry_iuv, dense_flow  # noqa: E402
from densepose_adapter.precomputed import PrecomputedIUV  # noqa: E402
from retarget.io.video import VideoWriter, iter_frames  # noqa: E402

EXAMPLES = REPO / "examples"
DRIVER_ID = "WOMEN#Dresses#id_00000106#03_7_additional"
# DensePose part indices of the four limbs (upper/lower arm or leg, front and back, hand or foot)
LIMBS = [(15, 17, 19, 21, 4), (16, 18, 20, 22, 3), (8, 10, 12, 14, 5), (7, 9, 11, 13, 6)]


def add_noise(iuv: np.ndarray, rng: np.random.Generator, drop_limb: bool) -> np.ndarray:
    """One frame of the protocol's synthetic DensePose noise (see the module docstring)."""
    labels = iuv[..., 0]
    h, w = labels.shape
    kernel = np.ones((5, 5), np.uint8)
    band = cv2.dilate(labels, kernel) != cv2.erode(labels, kernel)
    out = iuv.copy()
    ys, xs = np.nonzero(band & (rng.random(labels.shape) < 0.3))
    for _ in range(12):  # a random offset within 2 px whose label differs (retried where it did not)
        yy = np.clip(ys + rng.integers(-2, 3, len(ys)), 0, h - 1)
        xx = np.clip(xs + rng.integers(-2, 3, len(xs)), 0, w - 1)
        ok = labels[yy, xx] != labels[ys, xs]
        out[ys[ok], xs[ok]] = iuv[yy[ok], xx[ok]]
        ys, xs = ys[~ok], xs[~ok]
    person = out[..., 0] > 0
    uv = out[..., 1:].astype(np.float32) + rng.normal(0.0, 6.0, out[..., 1:].shape)
    out[..., 1:] = np.where(person[..., None], np.clip(np.rint(uv), 0, 255), 0).astype(np.uint8)
    if drop_limb:
        present = [limb for limb in LIMBS if np.isin(out[..., 0], limb).any()]
        if present:
            out[np.isin(out[..., 0], present[rng.integers(len(present))])] = 0
    return out


def noisy_clip(clean: list[np.ndarray], rng: np.random.Generator) -> list[np.ndarray]:
    n = len(clean)
    drops = set(rng.choice(n, max(1, round(0.05 * n)), replace=False).tolist())
    return [add_noise(x, rng, i in drops) for i, x in enumerate(clean)]


def errors(estimate: list[np.ndarray], clean: list[np.ndarray]) -> tuple[float, float]:
    """(part-label disagreement on person pixels, mean |U,V error| ·255 on rightly labelled pixels)."""
    wrong = uv = 0.0
    for est, ref in zip(estimate, clean):
        person = (est[..., 0] > 0) | (ref[..., 0] > 0)
        wrong += float(np.mean(est[..., 0][person] != ref[..., 0][person]))
        right = (est[..., 0] == ref[..., 0]) & (ref[..., 0] > 0)
        uv += float(np.mean(np.abs(est[..., 1:].astype(np.int16) - ref[..., 1:])[right]))
    return wrong / len(clean), uv / len(clean)


def naive_vote(noisy: list[np.ndarray], settings: temporal.TemporalSettings) -> list[np.ndarray]:
    """The same vote and UV filter over a fixed window without motion compensation (zero flow)."""
    frames = [temporal._Frame(x) for x in noisy]
    zero = np.zeros((*noisy[0].shape[:2], 2), np.float32)
    flows = {t: zero for t in range(len(noisy))}
    out = []
    for t in range(len(noisy)):
        window = range(max(0, t - settings.radius), min(len(noisy), t + settings.radius + 1))
        out.append(temporal.filter_frame(frames[t], {s: frames[s] for s in window if s != t}, t, flows, flows,
                                         settings))
    return out


def example_clip() -> tuple[list[np.ndarray], list[np.ndarray]]:
    frames = [f.rgb for f in iter_frames(EXAMPLES / "driver.mp4")]
    source = PrecomputedIUV(EXAMPLES / "driver.iuv")
    return [source.get(i, f.shape[:2]).iuv for i, f in enumerate(frames)], frames


def sample_person(samples: Path) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    sys.path.insert(0, str(EXAMPLES))
    from make_example import textured_background

    person = cv2.imread(str(samples / "source_img" / f"{DRIVER_ID}.jpg"))
    iuv = cv2.imread(str(samples / "source_iuv" / f"{DRIVER_ID}_IUV.png"), cv2.IMREAD_UNCHANGED)
    if person is None or iuv is None:
        raise SystemExit(f"{samples}: the reference samples are needed (see ../shared/README.md)")
    return person[..., ::-1], iuv, textured_background(np.random.default_rng(0))


def rendered_clip(samples: Path, xs: list[float]) -> tuple[list[np.ndarray], list[np.ndarray]]:
    """The sample person (scale 1.2) at horizontal centre ``x`` of every frame over a textured scene."""
    person, iuv, background = sample_person(samples)
    h, w = background.shape[:2]
    ph, pw = person.shape[:2]
    alpha = cv2.GaussianBlur(cv2.dilate((iuv[..., 0] > 0).astype(np.float32), np.ones((5, 5))), (5, 5), 1.0)
    clean, rgbs = [], []
    for x in xs:
        m = cv2.getRotationMatrix2D((pw / 2, ph / 2), 0.0, 1.2)
        m[:, 2] += (x - pw / 2, h / 2 - ph / 2)
        a = cv2.warpAffine(alpha, m, (w, h), flags=cv2.INTER_LINEAR)[..., None]
        warped = cv2.warpAffine(person, m, (w, h), flags=cv2.INTER_LINEAR)
        rgbs.append((background * (1 - a) + warped * a).astype(np.uint8))
        clean.append(cv2.warpAffine(iuv, m, (w, h), flags=cv2.INTER_NEAREST))
    return clean, rgbs


def flicker(video: Path, mask: np.ndarray) -> float:
    frames = [f.rgb.astype(np.int16) for f in iter_frames(video)]
    return float(np.mean([np.abs(b - a)[mask].mean() for a, b in zip(frames, frames[1:])]))


def rendered_flicker(samples: Path, rng: np.random.Generator, folder: Path) -> tuple[float, float]:
    """Flicker of ``retarget video`` output (weight-free) without / with the filter on a still person."""
    from retarget.pipeline.job import VideoJob, run_video_job
    from retarget.pipeline.video import VideoOptions

    clean, rgbs = rendered_clip(samples, [240.0] * 30)
    driver = folder / "still.mp4"
    writer = VideoWriter(driver, rgbs[0].shape[1], rgbs[0].shape[0], Fraction(20), Fraction(1, 20))
    for i, rgb in enumerate(rgbs):
        writer.write(rgb, i)
    writer.close()
    sidecar = folder / "still.iuv.npz"
    np.savez(sidecar, iuv=np.stack(noisy_clip(clean, rng)))
    mask = cv2.erode((clean[0][..., 0] > 0).astype(np.uint8), np.ones((5, 5), np.uint8)) > 0
    results = []
    for radius in (0, temporal.TemporalSettings().radius):
        out = folder / f"still_r{radius}.mp4"
        job = VideoJob(source=EXAMPLES / "source.jpg", driver=driver, output=out, driver_iuv=sidecar, overwrite=True,
                       options=VideoOptions(quiet=True, background="#808080", temporal_radius=radius))
        run_video_job(job, None)
        results.append(flicker(out, mask))
    return results[0], results[1]


def cost_per_frame(clean: list[np.ndarray], frames: list[np.ndarray], rng: np.random.Generator,
                   repeats: int) -> tuple[float, float, float]:
    """(best wall seconds, median wall seconds, best CPU seconds of this process) per frame."""
    noisy = noisy_clip(clean, rng)
    guides = [temporal.guide_from_rgb(f) for f in frames]
    runs, cpu = [], []
    for _ in range(repeats):
        filt = temporal.TemporalIUVFilter()
        tick, cpu_tick = time.perf_counter(), time.process_time()
        for iuv, guide in zip(noisy, guides):
            filt.push(iuv, guide)
        filt.finish()
        runs.append((time.perf_counter() - tick) / len(noisy))
        cpu.append((time.process_time() - cpu_tick) / len(noisy))
    return min(runs), float(np.median(runs)), min(cpu)


def real_label_flicker(iuvs: list[np.ndarray], greys: list[np.ndarray]) -> float:
    """Mean share of person pixels (in either frame) whose label changes between consecutive frames,
    frame ``t + 1`` sampled back onto frame ``t`` along the DIS flow of the real frames."""
    values = []
    for t in range(len(iuvs) - 1):
        carried = carry_iuv(iuvs[t + 1], dense_flow(greys[t], greys[t + 1]))[..., 0]
        labels = iuvs[t][..., 0]
        person = (labels > 0) | (carried > 0)
        if person.any():
            values.append(float(np.mean(labels[person] != carried[person])))
    return float(np.mean(values)) if values else float("nan")


def boundary_error(filtered: list[np.ndarray], raw: list[np.ndarray]) -> tuple[float, float, float]:
    """(label disagreement within 2 px of raw part borders, disagreement inside the parts, mean distance in
    px of the filtered outline from the raw one), means over the frames."""
    kernel = np.ones((5, 5), np.uint8)
    band_err, inner_err, outline = [], [], []
    for f, r in zip(filtered, raw):
        lf, lr = f[..., 0], r[..., 0]
        band = cv2.dilate(lr, kernel) != cv2.erode(lr, kernel)
        person = (lf > 0) | (lr > 0)
        inner = person & ~band
        band_err.append(float(np.mean(lf[band] != lr[band])) if band.any() else 0.0)
        inner_err.append(float(np.mean(lf[inner] != lr[inner])) if inner.any() else 0.0)
        edge_f = (lf > 0).astype(np.uint8) - cv2.erode((lf > 0).astype(np.uint8), np.ones((3, 3), np.uint8))
        if edge_f.any() and (lr > 0).any():
            edge_r = (lr > 0).astype(np.uint8) - cv2.erode((lr > 0).astype(np.uint8), np.ones((3, 3), np.uint8))
            distance = cv2.distanceTransform((edge_r == 0).astype(np.uint8), cv2.DIST_L2, 3)
            outline.append(float(distance[edge_f > 0].mean()))
    return float(np.mean(band_err)), float(np.mean(inner_err)), float(np.mean(outline)) if outline else float("nan")


def real_clips(extra: list[Path]) -> None:
    """Section 5: label flicker of real DensePose, raw vs filtered (see the module docstring)."""
    from end_to_end import find_clips, load_clip

    clips = find_clips(extra)
    print(f"5. real DensePose clips ({len(clips)}), flow-compensated label flicker raw vs filtered")
    if not clips:
        print("   (no clip found: ../shared/real is absent and no --clips given)")
        return
    settings = temporal.TemporalSettings()
    ratios = []
    for folder in clips:
        frames = load_clip(folder)
        if len(frames) < 3:
            continue
        greys, raw = [g for g, _ in frames], [i for _, i in frames]
        # streaming (identical output, flat memory: a long full-HD clip's flows would not fit otherwise)
        filtered = [iuv for _, iuv in temporal.filter_stream(zip(raw, greys), settings)]
        before, after = real_label_flicker(raw, greys), real_label_flicker(filtered, greys)
        band, inner, outline = boundary_error(filtered, raw)
        ratios.append(after / before)
        name = folder.name if folder.parent.name == "real" else f"{folder.parent.name}/{folder.name}"
        print(f"   clip={name} frames={len(frames)} flicker raw={before:.4f} filtered={after:.4f} "
              f"ratio={after / before:.2f} boundary_err band={band:.4f} inside={inner:.4f} outline_px={outline:.2f}")
    if ratios:
        print(f"   worst clip ratio {max(ratios):.2f}, mean {np.mean(ratios):.2f}")
        print(f"  {'label flicker filtered / raw, every real clip':<52} {max(ratios):<28.2f} target {'<= 0.5':<14} "
              f"{'ok' if max(ratios) <= 0.5 else 'MISSED'}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--samples", type=Path, default=REPO.parent / "shared" / "samples")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--clips", type=Path, nargs="*", default=[],
                        help="more folders with rgb/ + iuv/ (section 5), beside ../shared/real")
    parser.add_argument("--only-real", action="store_true", help="run section 5 only")
    args = parser.parse_args()
    rng = np.random.default_rng(args.seed)
    settings = temporal.TemporalSettings()
    cpu = next((line.split(":", 1)[1].strip() for line in open("/proc/cpuinfo") if line.startswith("model name")),
               "?") if os.path.exists("/proc/cpuinfo") else "?"
    print(f"temporal filter {settings.key()}; cv2 {cv2.__version__}, {cv2.getNumThreads()} threads; "
          f"CPU {cpu}, {os.cpu_count()} cores")

    def line(name, value, target, ok):
        print(f"  {name:<52} {value:<28} target {target:<14} {'ok' if ok else 'MISSED'}")

    if args.only_real:
        real_clips(args.clips)
        return

    clean, frames = example_clip()
    noisy = noisy_clip(clean, rng)
    filtered = temporal.filter_sequence(noisy, [temporal.guide_from_rgb(f) for f in frames], settings)
    (nl, nu), (fl, fu), (vl, vu) = errors(noisy, clean), errors(filtered, clean), errors(naive_vote(noisy, settings),
                                                                                        clean)
    print(f"1. example driver, {len(clean)} frames {clean[0].shape[1]}x{clean[0].shape[0]}")
    print(f"   noisy: labels {nl:.4f}, UV {nu:.2f}; filtered: labels {fl:.4f}, UV {fu:.2f}; "
          f"naive vote without motion compensation: labels {vl:.4f}, UV {vu:.2f}")
    line("part-label disagreement filtered / noisy", f"{fl / nl:.2f}", "<= 0.5", fl <= 0.5 * nl)
    line("mean |UV error| filtered / noisy", f"{fu / nu:.2f}", "<= 0.6", fu <= 0.6 * nu)
    print(f"   (naive fixed-window vote: labels {vl / nl:.2f}x noisy, UV {vu / nu:.2f}x)")

    clean, rgbs = rendered_clip(args.samples, [60.0 + 12.0 * i for i in range(30)])
    noisy = noisy_clip(clean, rng)
    filtered = temporal.filter_sequence(noisy, [temporal.guide_from_rgb(f) for f in rgbs], settings)
    (nl, nu), (fl, fu) = errors(noisy, clean), errors(filtered, clean)
    print("2. fast motion: 12 px per frame, 30 frames")
    print(f"   noisy: labels {nl:.4f}, UV {nu:.2f}; filtered: labels {fl:.4f}, UV {fu:.2f}")
    line("filtered error <= noisy (labels; UV)", f"{fl / nl:.2f}; {fu / nu:.2f}", "<= 1", fl <= nl and fu <= nu)

    with tempfile.TemporaryDirectory() as tmp:
        os.environ["RETARGET_CACHE_DIR"] = str(Path(tmp) / "cache")
        without, with_filter = rendered_flicker(args.samples, rng, Path(tmp))
    print("3. flicker of the rendered video (still person, weight-free, 30 frames)")
    print(f"   mean |frame-to-frame difference| inside the person: without {without:.2f}, with {with_filter:.2f}")
    line("flicker with / without", f"{with_filter / without:.2f}", "<= 0.6", with_filter <= 0.6 * without)

    clean, frames = example_clip()
    best, median, cpu_time = cost_per_frame(clean, frames, rng, args.repeats)
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    print(f"4. cost per 480x360 frame (streaming, {args.repeats} runs over {len(clean)} frames; load average "
          f"{load:.1f} on {os.cpu_count()} cores)")
    print(f"   wall: best run {best * 1000:.1f} ms, median run {median * 1000:.1f} ms; CPU time: lowest of the runs "
          f"{cpu_time * 1000:.1f} ms (all threads; waiting for a busy CPU does not count)")
    line("seconds per frame (best of wall and CPU time)", f"{min(best, cpu_time) * 1000:.1f} ms", "<= 50 ms",
         min(best, cpu_time) <= 0.050)

    real_clips(args.clips)


if __name__ == "__main__":
    main()
