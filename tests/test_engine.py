"""The inference engines (issue 14): OpenVINO parity with torch on the tiny models, the conversion cache
(keying, rebuild after damage), the error when OpenVINO is missing, int8's error budget, the DensePose
backbone through OpenVINO, and the CUDA path's host/device copies (checked on the CPU)."""

from __future__ import annotations

import re
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from retarget.errors import UsageError
from tests.assets import coordinpaint_dir, densepose_dir
from tests.precision import HINTS, PRECISION_OF_HINT, TOLERANCE, torch_bf16_error

ov = pytest.importorskip("openvino")  # `make setup` installs it (pinned), so CI runs these


@pytest.fixture
def engine_home(monkeypatch, tmp_path_factory):
    """One engine cache for this module's tests (conversions are the slow part), `auto` unforced."""
    monkeypatch.delenv("RETARGET_ENGINE", raising=False)
    root = _shared_cache(tmp_path_factory)
    monkeypatch.setenv("RETARGET_CACHE_DIR", str(root))
    return root / "engines"


_CACHE: list[Path] = []


def _shared_cache(factory) -> Path:
    if not _CACHE:
        _CACHE.append(factory.mktemp("engine_cache"))
    return _CACHE[0]


@pytest.fixture(scope="module")
def models():
    from retarget.pipeline.pair import Models

    return Models.from_checkpoint_dir(coordinpaint_dir())


def _inputs(refiner, n: int, size: int = 64, seed: int = 1):
    from retarget.engine.openvino_refiner import example_inputs
    from retarget.models.refiner import SourceFeatures

    torch.manual_seed(seed)
    full = example_inputs(refiner, n, size)
    with torch.no_grad():
        feats = refiner.encode_source(torch.rand(1, refiner.in_source, size, size))
    return SourceFeatures(feats.scales), full[3] + 0.1 * seed, full[4], full[5]


@pytest.mark.parametrize("hint", HINTS)
def test_openvino_decode_matches_torch(models, engine_home, hint):
    """Within the tolerance of the precision asked for (tests/precision.py), at every batch split."""
    from retarget.engine import wrap_models

    wrapped = wrap_models(models, "openvino", "cpu", PRECISION_OF_HINT[hint], 3, 64)
    assert wrapped.refiner.engine == "openvino" and models.refiner.__class__.__name__ == "Refiner"
    for n in (1, 3, 5):  # padded, exact, split + padded
        source, target, xy, mask = _inputs(models.refiner, n)
        with torch.no_grad():
            expected = models.refiner.decode(source, target, xy, mask)
        got = wrapped.refiner.decode(source, target, xy, mask)
        assert got.shape == expected.shape
        TOLERANCE[hint].check(got, expected, f"OpenVINO {hint}, batch {n}")
        assert expected.abs().max().item() > 1e-2  # not trivially zero


def test_bf16_tolerance_covers_bf16_and_f32_catches_it(models):
    """On any CPU: bf16 arithmetic (torch, emulated where not native) is within the bf16 tolerance and
    outside the f32 one, so an f32 comparison that silently ran bf16 fails everywhere, not only on
    CPUs with native bf16 (where OpenVINO's own default precision is bf16)."""
    source, target, xy, mask = _inputs(models.refiner, 3)

    def run(refiner, cast):
        features = type(source)(tuple(cast(f) for f in source.scales))
        return refiner.decode(features, cast(target), cast(xy), cast(mask))

    expected, got = torch_bf16_error(models.refiner, run)
    TOLERANCE["bf16"].check(got, expected, "torch bf16")
    with pytest.raises(AssertionError, match="over the tolerance"):
        TOLERANCE["f32"].check(got, expected, "torch bf16 against the f32 tolerance")


def test_every_openvino_compile_states_its_precision(tmp_path):
    """compile_cpu requires a precision and passes it; a compile without one fails the test that made it
    (tests/conftest.py wraps openvino.Core.compile_model for the session); and no code compiles elsewhere."""
    from densepose_adapter.openvino_cache import compile_cpu, compiled_precision
    import tests.conftest as conftest

    module = _Tiny()
    with torch.no_grad():
        model = ov.convert_model(module, example_input=torch.randn(1, 2, 8, 8))
    with pytest.raises(TypeError):
        compile_cpu(model)  # no default precision
    with pytest.raises(ValueError, match="precision_hint"):
        compile_cpu(model, "fp16")
    for hint in HINTS:
        compiled = compile_cpu(model, hint)
        assert compiled_precision(compiled) in HINTS
    assert compiled_precision(compile_cpu(model, "f32")) == "f32"  # f32 means f32 on every CPU
    assert not conftest._UNPINNED_COMPILES
    ov.Core().compile_model(model, "CPU")  # what the wrapper must catch
    assert len(conftest._UNPINNED_COMPILES) == 1
    conftest._UNPINNED_COMPILES.clear()
    repo = Path(__file__).resolve().parents[1]
    allowed = {repo / "densepose_adapter" / "openvino_cache.py", repo / "tests" / "conftest.py",
               Path(__file__).resolve()}
    offenders = [str(path.relative_to(repo)) for folder in ("retarget", "densepose_adapter", "bench", "tests",
                                                            "examples")
                 for path in sorted((repo / folder).rglob("*.py"))
                 if path.resolve() not in allowed and re.search(r"\bcompile_model\(", path.read_text())]
    assert offenders == [], f"OpenVINO compiled outside compile_cpu: {offenders}"


@pytest.mark.parametrize("hint", HINTS)
def test_render_targets_through_openvino_matches_torch(models, engine_home, hint):
    """The pipeline (source features as inputs, not constants): two different sources, one conversion."""
    from retarget.engine import wrap_models
    from retarget.pipeline.pair import prepare_source, render_targets
    from retarget.pipeline.source import frame_source
    from retarget.io.iuv import read_iuv_png
    from retarget.io.image import read_image_rgb
    from tests.conftest import EXAMPLE_IUV, EXAMPLE_PHOTO

    crop = frame_source(read_image_rgb(EXAMPLE_PHOTO), iuv=read_iuv_png(EXAMPLE_IUV), size=64)
    image = torch.from_numpy(crop.image.astype(np.float32) / 255).permute(2, 0, 1)[None]
    uv = torch.from_numpy(crop.uv).permute(2, 0, 1)[None]
    wrapped = wrap_models(models, "openvino", "cpu", PRECISION_OF_HINT[hint], 3, 64)
    target = torch.flip(uv, dims=[3]).repeat(2, 1, 1, 1)
    outputs = []
    for src in (image, 1 - image):
        state = prepare_source(src, uv, models)
        expected = render_targets(state, target, models).output
        got = render_targets(state, target, wrapped).output
        TOLERANCE[hint].check(got, expected, f"render_targets, OpenVINO {hint}")
        outputs.append(got)
    assert (outputs[0] - outputs[1]).abs().max().item() > 1e-3  # the source features are inputs


def test_converted_refiner_has_static_input_shapes(models, engine_home):
    """Tracing leaves every dimension dynamic; the cached model must carry the one shape it serves."""
    from retarget.engine.openvino_refiner import OpenVINORefiner

    refiner = OpenVINORefiner(models.refiner, batch_size=3, size=(48, 64))
    ngf, shapes = models.refiner.ngf, {}
    for port in refiner.compiled.inputs:
        assert port.get_partial_shape().is_static, port
        shapes[port.get_any_name()] = list(port.get_shape())
    assert shapes == {"source_full": [1, ngf, 48, 64], "source_half": [1, ngf, 24, 32],
                      "source_quarter": [1, ngf, 12, 16], "target_input": [3, models.refiner.in_target, 48, 64],
                      "target_xy": [3, 2, 48, 64], "target_mask": [3, 1, 48, 64]}


def test_layer_profile_names_every_convolution_with_its_macs(models, engine_home):
    """bench/engine_profile.py's figures: every convolution of the decode branch is counted, with the MACs
    that torch's own layers give (forward hooks) and a time from OpenVINO's counters."""
    from retarget.engine.openvino_refiner import OpenVINORefiner
    from retarget.engine.profile import conv_macs, profile_model

    batch, size = 2, 64
    refiner = OpenVINORefiner(models.refiner, batch_size=batch, size=size)
    expected = []

    def count(module, args, out):
        expected.append(out.numel() * module.in_channels // module.groups * module.kernel_size[0]
                        * module.kernel_size[1])

    source, target, xy, mask = _inputs(models.refiner, batch, size)  # (runs the source branch: before the hooks)
    hooks = [m.register_forward_hook(count) for m in models.refiner.modules() if isinstance(m, torch.nn.Conv2d)]
    try:
        with torch.no_grad():
            models.refiner.decode(source, target, xy, mask)
    finally:
        for hook in hooks:
            hook.remove()
    macs = conv_macs(refiner.model)
    assert len(macs) == len(expected) == 13  # target encoder 3, residual 6, decoder 3, final 1
    assert sum(macs.values()) == sum(expected)
    inputs = [[*(f.numpy() for f in source.scales), target.numpy(), xy.numpy(), mask.numpy()]]
    result = profile_model(refiner.model, inputs, calls=2, frames_per_call=batch)
    assert set(result.macs) == set(macs)  # every convolution ran under its torch layer's name
    assert result.conv_s() > 0 and result.gmac_per_s() > 0 and result.wall_s > 0
    assert sum(result.macs.values()) == sum(expected) / batch
    assert all(result.by_layer[name] > 0 for name in macs)


def test_refiner_conversion_is_cached_and_keyed(models, engine_home, monkeypatch):
    from densepose_adapter.openvino_cache import entry_key
    from retarget.engine import openvino_refiner
    from retarget.engine.openvino_refiner import OpenVINORefiner

    OpenVINORefiner(models.refiner, batch_size=3, size=64)
    assert list(engine_home.glob("refiner-*/meta.json"))
    calls = []
    monkeypatch.setattr(openvino_refiner, "convert_decode", lambda *a: calls.append(a))
    OpenVINORefiner(models.refiner, batch_size=3, size=64)
    assert calls == []  # reused, not converted again
    base = {"net": "x", "weights": "a", "batch": 2, "size": [64, 64]}
    keys = {entry_key(base), entry_key(dict(base, weights="b")), entry_key(dict(base, batch=4)),
            entry_key(dict(base, size=[128, 128])), entry_key(dict(base, precision="int8"))}
    assert len(keys) == 5


class _Tiny(torch.nn.Module):
    def __init__(self):
        super().__init__()
        torch.manual_seed(0)
        self.conv = torch.nn.Conv2d(2, 3, 3, padding=1)

    def forward(self, x):
        return self.conv(x)


@pytest.mark.parametrize("damage", ["truncate_bin", "garbage_xml", "garbage_bin_same_size", "no_meta"])
def test_damaged_cache_entry_is_rebuilt_never_trusted(tmp_path, damage, capsys):
    from densepose_adapter.openvino_cache import ModelCache, compile_cpu

    module = _Tiny()
    x = torch.randn(1, 2, 8, 8)
    builds = []

    def build():
        builds.append(1)
        with torch.no_grad():
            return ov.convert_model(module, example_input=x), {"precision": "fp32"}

    cache = ModelCache(tmp_path / "engines")
    cache.get("tiny", "k1", build)
    cache.get("tiny", "k1", build)
    assert len(builds) == 1
    entry = cache.entry_dir("tiny", "k1")
    data = (entry / "model.bin").read_bytes()
    if damage == "truncate_bin":
        (entry / "model.bin").write_bytes(data[: len(data) // 2])
    elif damage == "garbage_xml":
        (entry / "model.xml").write_text("<net>garbage")
    elif damage == "garbage_bin_same_size":  # OpenVINO would load this; the hash check does not trust it
        (entry / "model.bin").write_bytes(bytes(len(data)))
    else:
        (entry / "meta.json").unlink()
    capsys.readouterr()
    model, _ = cache.get("tiny", "k1", build)
    assert len(builds) == 2
    assert "damaged" in capsys.readouterr().err
    out = compile_cpu(model, "f32")([x.numpy()])[0]
    with torch.no_grad():
        TOLERANCE["f32"].check(torch.from_numpy(out), module(x), "rebuilt entry")
    assert cache.load("tiny", "k1") is not None  # the rebuilt entry is valid again
    assert not list((tmp_path / "engines").glob(".tiny-*"))  # no temporary folder left behind


def test_model_weights_change_the_key(models, engine_home):
    from densepose_adapter.openvino_cache import state_digest

    other = type(models.refiner)(ngf=models.refiner.ngf)
    assert state_digest(other) != state_digest(models.refiner)
    assert state_digest(models.refiner) == state_digest(models.refiner)


def test_engine_rules(monkeypatch):
    from retarget.engine import resolve_engine

    monkeypatch.delenv("RETARGET_ENGINE", raising=False)
    assert resolve_engine("auto", "cpu", "fp32") == "openvino"
    assert resolve_engine("auto", "cuda", "fp16") == "torch"
    assert resolve_engine("auto", "cpu", "int8") == "openvino"
    assert resolve_engine("torch", "cpu", "fp32") == "torch"
    with pytest.raises(UsageError, match="int8 needs --engine openvino"):
        resolve_engine("torch", "cpu", "int8")
    with pytest.raises(UsageError, match="runs on the CPU"):
        resolve_engine("openvino", "cuda", "fp32")
    with pytest.raises(UsageError, match="--engine 'onnx'"):
        resolve_engine("onnx", "cpu", "fp32")
    monkeypatch.setenv("RETARGET_ENGINE", "torch")
    assert resolve_engine("auto", "cpu", "fp32") == "torch"


def test_without_openvino_auto_is_torch_and_openvino_says_how_to_install(monkeypatch, models, tmp_path):
    from retarget.cli import main
    from retarget.engine import resolve_engine, wrap_models

    monkeypatch.delenv("RETARGET_ENGINE", raising=False)
    monkeypatch.setitem(sys.modules, "openvino", None)  # `import openvino` raises ImportError
    assert resolve_engine("auto", "cpu", "fp32") == "torch"
    assert wrap_models(models, "auto", "cpu", "fp32", 2, 64) is models
    with pytest.raises(UsageError, match=r"pip install 'retarget\[openvino\]'"):
        resolve_engine("openvino", "cpu", "fp32")
    with pytest.raises(UsageError, match=r"--precision int8: OpenVINO is not installed"):
        resolve_engine("auto", "cpu", "int8")
    from tests.conftest import EXAMPLE_PHOTO
    from tests.media import make_driver

    make_driver(tmp_path / "d.mp4", n=3)
    code = main(["video", "--source", str(EXAMPLE_PHOTO), "--driver", str(tmp_path / "d.mp4"), "--weight-free",
                 "--engine", "openvino", "-o", str(tmp_path / "o.mp4"), "--quiet"])
    assert code == 2 and not (tmp_path / "o.mp4").exists()


@pytest.mark.slow  # ≈80 s on 2 shared cores: NNCF calibration + accuracy control
def test_int8_on_the_tiny_models_meets_its_budget_or_falls_back(models, engine_home, capsys):
    from retarget.engine.calibration import batched, measure
    from retarget.pipeline.calibration_frames import calibration_frames_for, example_refiner_inputs
    from retarget.engine.openvino_refiner import INT8_BUDGET, OpenVINORefiner

    refiner = OpenVINORefiner(models.refiner, precision="int8", batch_size=2, size=64,
                               calibration_frames=calibration_frames_for(models, 64))
    meta = refiner.meta
    assert meta["precision"] == "int8" and meta["err_mean"] > 0  # int8 really differs from fp32
    layer = re.compile(r"(target_encoder|residual|decoder)\.\d\.conv|final")
    assert all(layer.fullmatch(name) for name in meta["fp32_convolutions"]), meta["fp32_convolutions"]
    # the stored figures are what an independent measurement on the validation frames gives
    frames = example_refiner_inputs(models.refiner, models.inpainter, 64)[1::2]
    items = batched(frames, 2)
    fp32 = OpenVINORefiner(models.refiner, batch_size=2, size=64)
    references = [np.array(fp32.compiled(item)[0], copy=True) for item in items]
    err = capsys.readouterr().err
    if meta["within_budget"]:
        assert refiner.precision == "int8"
        assert ("kept in fp32" in err) == bool(meta["fp32_convolutions"])  # the user is told what stayed fp32
        err_mean, err_p99 = measure(refiner.compiled, items, references)
        assert err_mean == pytest.approx(meta["err_mean"], rel=1e-3, abs=1e-3)
        assert err_mean <= INT8_BUDGET["mean"] and err_p99 <= INT8_BUDGET["p99"]
    else:
        assert refiner.precision == "fp32" and "exceeds the budget" in err
    forced = OpenVINORefiner(models.refiner, precision="int8", batch_size=2, size=64,
                               calibration_frames=calibration_frames_for(models, 64),
                             over_budget="run")
    assert forced.precision == "int8"


@pytest.mark.parametrize("hint", HINTS)
def test_densepose_backbone_through_openvino_matches_torch(engine_home, hint):
    from densepose_adapter.openvino_backbone import OpenVINOBackbone
    from densepose_adapter.rcnn import build_model, load_config

    folder = densepose_dir()
    model = build_model(folder / "model_tiny.pkl", load_config(folder / "meta.json"))
    backbone = OpenVINOBackbone(model.backbone, engine_home, {"test": 1}, quiet=True, precision_hint=hint)
    for hw in ((96, 128), (160, 64)):  # dynamic input size (tracked crops)
        x = torch.randn(1, 3, *hw)
        with torch.no_grad():
            expected = model.backbone(x)
        got = backbone(x)
        assert list(got) == list(expected)
        for name in expected:
            assert got[name].shape == expected[name].shape
            TOLERANCE[hint].check(got[name], expected[name], f"FPN {name} at {hw}, OpenVINO {hint}")


def test_densepose_backbone_compiles_a_repeated_input_shape_statically(engine_home, monkeypatch):
    """Full-frame DensePose repeats one shape: from its second frame on it runs a static-shape compile
    (same outputs); one-off shapes (tracked crops) stay on the dynamic model; the compiles are bounded."""
    from densepose_adapter import openvino_backbone
    from densepose_adapter.openvino_backbone import OpenVINOBackbone
    from densepose_adapter.rcnn import build_model, load_config

    folder = densepose_dir()
    model = build_model(folder / "model_tiny.pkl", load_config(folder / "meta.json"))
    backbone = OpenVINOBackbone(model.backbone, engine_home, {"test": 1}, quiet=True)
    monkeypatch.setattr(openvino_backbone, "STATIC_SHAPES", 2)
    x = torch.randn(1, 3, 96, 128)
    first = backbone(x)
    assert backbone.compiled_for((1, 3, 64, 64)) is backbone.compiled  # a new shape: dynamic
    assert not backbone.static
    backbone(x)
    second = backbone(x)  # x's shape again, twice in a row → static
    assert list(backbone.static) == [(1, 3, 96, 128)]
    static = backbone.static[(1, 3, 96, 128)]
    assert static.inputs[0].get_partial_shape().is_static
    for name in first:  # both compiles f32 (the backbone's default precision): only summation order differs
        assert (second[name] - first[name]).abs().max().item() <= 1e-5 * max(1.0, first[name].abs().max())
    for hw in ((64, 64), (64, 96), (32, 32)):
        backbone(torch.randn(1, 3, *hw))
        backbone(torch.randn(1, 3, *hw))
    assert list(backbone.static) == [(1, 3, 64, 96), (1, 3, 32, 32)]  # the oldest dropped, at most 2 kept


def test_thread_counts_of_the_openvino_models_change_nothing_but_the_threads(models, engine_home):
    """The overlap's thread budget (issue 30) recompiles the refiner and the DensePose backbone with fewer threads:
    the same outputs, each count compiled once, back to every core after."""
    from densepose_adapter.openvino_backbone import OpenVINOBackbone
    from densepose_adapter.rcnn import build_model, load_config
    from retarget.engine.openvino_refiner import OpenVINORefiner

    refiner = OpenVINORefiner(models.refiner, "fp32", batch_size=2, size=64, quiet=True)
    source, target, xy, mask = _inputs(models.refiner, 2)
    every = refiner.decode(source, target, xy, mask)
    refiner.set_threads(1)
    assert refiner.threads == 1 and refiner.compiled.get_property("INFERENCE_NUM_THREADS") == 1
    assert torch.equal(refiner.decode(source, target, xy, mask), every)
    one = refiner.compiled
    refiner.set_threads(None)
    refiner.set_threads(1)
    assert refiner.compiled is one  # compiled once per count

    folder = densepose_dir()
    net = build_model(folder / "model_tiny.pkl", load_config(folder / "meta.json"))
    backbone = OpenVINOBackbone(net.backbone, engine_home, {"test": 1}, quiet=True)
    x = torch.randn(1, 3, 96, 128)
    before = backbone(x)
    backbone.set_threads(1)
    assert backbone.compiled.get_property("INFERENCE_NUM_THREADS") == 1
    after = backbone(x)
    assert all(torch.equal(before[k], after[k]) for k in before)
    backbone.set_threads(None)
    assert backbone.threads is None


@pytest.mark.slow
def test_densepose_backend_openvino_gives_the_same_iuv(engine_home):
    from densepose_adapter.torchvision_backend import TorchvisionDensePoseBackend
    from tests.conftest import EXAMPLE_PHOTO
    import cv2

    folder = densepose_dir()
    image = cv2.imread(str(EXAMPLE_PHOTO))
    kwargs = dict(weights=folder / "model_tiny.pkl", config=folder / "meta.json", densepose_size=128)
    torch_backend = TorchvisionDensePoseBackend(**kwargs)
    ov_backend = TorchvisionDensePoseBackend(**kwargs, engine="openvino", engine_cache=engine_home, quiet=True)
    assert ov_backend.cache_key() != torch_backend.cache_key()
    a, b = torch_backend.predict([image])[0], ov_backend.predict([image])[0]
    person = a.iuv[..., 0] > 0
    assert person.sum() > 100
    same = (a.iuv == b.iuv).all(axis=2)[person].mean()
    assert same >= 0.995


def test_host_device_copies_on_cpu():
    from retarget.engine.transfer import device_to_host, host_to_device, uses_pinned_memory

    assert not uses_pinned_memory("cpu")
    array = np.random.default_rng(0).random((2, 8, 6, 2), dtype=np.float32)
    tensor = host_to_device(array, "cpu")
    assert tensor.shape == (2, 2, 8, 6) and torch.equal(tensor.permute(0, 2, 3, 1), torch.from_numpy(array))
    half = tensor.to(torch.bfloat16)
    assert device_to_host(half).dtype == np.float32


def test_autocast_only_for_torch_mixed_precisions():
    import contextlib

    from retarget.pipeline.video import _autocast

    for precision in ("fp32", "int8"):
        assert isinstance(_autocast(precision, torch.device("cpu")), contextlib.nullcontext)
    assert not isinstance(_autocast("bf16", torch.device("cpu")), contextlib.nullcontext)


def test_image_command_with_openvino_matches_torch(engine_home, tmp_path, monkeypatch):
    """`retarget image --engine openvino` (converted at the photo's own size, batch 1) renders what torch does."""
    from retarget.cli import main
    from retarget.io.image import read_image_rgb
    from tests.assets import coordinpaint_dir
    from tests.conftest import EXAMPLE_IUV, EXAMPLE_PHOTO

    from PIL import Image

    target_iuv = tmp_path / "mirrored_IUV.png"  # a second pose of the photo's size: the source pose mirrored
    Image.open(EXAMPLE_IUV).transpose(Image.Transpose.FLIP_LEFT_RIGHT).save(target_iuv)
    common = ["image", "--source", str(EXAMPLE_PHOTO), "--source-iuv", str(EXAMPLE_IUV), "--target-iuv",
              str(target_iuv), "--checkpoint-dir", str(coordinpaint_dir())]
    from retarget.engine.openvino_refiner import OpenVINORefiner

    calls, decode = [], OpenVINORefiner.decode
    monkeypatch.setattr(OpenVINORefiner, "decode", lambda self, *a: calls.append(self.hw) or decode(self, *a))
    outputs = {}
    for engine in ("torch", "openvino"):
        out = tmp_path / f"{engine}.png"
        assert main([*common, "--engine", engine, "-o", str(out)]) == 0
        outputs[engine] = read_image_rgb(out).astype(np.int16)
    assert calls == [(256, 256)]  # only the openvino run went through the converted model, at the photo's size
    diff = np.abs(outputs["openvino"] - outputs["torch"])
    assert diff.max() <= 1, diff.max()
    assert outputs["torch"].std() > 5  # a picture, not a blank frame


def test_auto_probe_measures_the_real_refiner(models, engine_home):
    """The probe runs the candidates on the tiny refiner: torch and OpenVINO fp32 timed, bf16 judged by its error
    against fp32 where the CPU has it natively, int8 not considered until quantized (issue 30)."""
    from retarget.engine import auto
    from retarget.engine.cpu import cpu_flags, has_native_bf16
    from retarget.pipeline.calibration_frames import example_refiner_inputs

    frames = example_refiner_inputs(models.refiner, models.inpainter, 64)
    native = has_native_bf16(cpu_flags())
    measured = {m.name: m for m in auto.measure(models.refiner, frames, 2, 64, native, threads=1)}
    assert list(measured) == ["torch fp32", "openvino fp32", "openvino bf16", "openvino int8"]
    assert measured["torch fp32"].s_per_frame > 0 and measured["openvino fp32"].err_mean == 0.0
    assert "not quantized" in measured["openvino int8"].skipped
    bf16 = measured["openvino bf16"]
    assert (bf16.skipped is not None and "native bf16" in bf16.skipped) if not native else bf16.err_mean is not None
    assert auto.decide(list(measured.values())) in auto.CANDIDATES
