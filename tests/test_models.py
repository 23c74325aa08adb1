"""Models and official-checkpoint loading: parity on tiny fixtures, full-size shapes, strict errors."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from retarget.errors import WeightsError
from retarget.models import Inpainter, Refiner, load_official_inpainter, load_official_refiner
from retarget.models.loading import (
    convert_official_inpainter_state,
    convert_official_refiner_state,
    fold_spectral_norm,
    inpainter_from_state,
    refiner_from_state,
)
from tests.assets import coordinpaint_dir
from tests.conftest import COORDINPAINT, fixture_dirs, require_shared

FIXTURES = fixture_dirs("coordinpaint", "expected.npz")


def _t(array: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(np.asarray(array))[None]


@pytest.mark.parametrize("fixture", FIXTURES, ids=lambda p: p.name)
def test_inpainter_parity(fixture):
    expected = np.load(require_shared(fixture / "expected.npz"))
    model = load_official_inpainter(fixture / "inpainter.pth")
    with torch.no_grad():
        raw = model(_t(expected["inpainter_input"]))[0].numpy()
    ref = expected["inpainter_raw"]
    assert (np.abs(raw - ref) / np.maximum(1.0, np.abs(ref))).max() <= 1e-4
    np.testing.assert_allclose(np.tanh(raw), expected["inpainted_xy"], atol=1e-4)


@pytest.mark.parametrize("fixture", FIXTURES, ids=lambda p: p.name)
def test_refiner_parity_and_split_source_branch(fixture):
    e = np.load(require_shared(fixture / "expected.npz"))
    model = load_official_refiner(fixture / "refiner.pth")
    args = [_t(e[k]) for k in ("refiner_source_input", "refiner_target_input", "target_xy", "target_mask")]
    with torch.no_grad():
        full = torch.sigmoid(model(*args))[0].numpy()
        features = model.encode_source(args[0])
        batched = torch.sigmoid(model.decode(features, *(torch.cat([a, a]) for a in args[1:])))
    np.testing.assert_allclose(full, e["refined"], atol=1e-4)
    np.testing.assert_allclose(batched[0].numpy(), full, atol=1e-5)
    np.testing.assert_allclose(batched[1].numpy(), full, atol=1e-5)


def test_widths_are_inferred_from_the_checkpoint():
    folder = coordinpaint_dir()  # ngf 8 inpainter, ngf 16 refiner (tests/assets.py)
    inp = load_official_inpainter(folder / "inpainter.pth")
    ref = load_official_refiner(folder / "refiner.pth")
    assert inp.ngf == 8 and inp.in_channels == 5
    assert ref.ngf == 16 and ref.in_target == 10


def _random_official_state(shapes: dict[str, list[int]]) -> dict[str, torch.Tensor]:
    gen = torch.Generator().manual_seed(0)
    state = {}
    for key, shape in shapes.items():
        if key.endswith("num_batches_tracked"):
            state[key] = torch.tensor(0)
        elif key.endswith("running_var"):
            state[key] = torch.rand(shape, generator=gen) + 0.5
        else:
            state[key] = torch.randn(shape, generator=gen) * 0.05
    # the official file holds the same tensors twice (gateN.* and sequence.<k>.*)
    return state


def test_full_size_official_shapes_load_and_cover_every_key():
    shapes = json.loads(require_shared(COORDINPAINT / "official_state_dict_shapes.json").read_text())
    inp_state = _random_official_state(shapes["inpainter.pth"])
    ref_state = _random_official_state(shapes["refiner.pth"])
    inpainter = inpainter_from_state(inp_state)
    refiner = refiner_from_state(ref_state)
    assert (inpainter.ngf, refiner.ngf) == (32, 256)
    # our modules hold exactly what the converted official state provides, shape for shape
    for model, converted in ((inpainter, convert_official_inpainter_state(inp_state)),
                             (refiner, convert_official_refiner_state(ref_state))):
        ours = {k: tuple(v.shape) for k, v in model.state_dict().items()}
        assert ours == {k: tuple(v.shape) for k, v in converted.items()}
    # and every official key was used: gate/sequence pairs and all spectral-norm triples
    n_seq = sum(k.startswith("sequence.") for k in shapes["inpainter.pth"])
    assert len(inpainter.state_dict()) == len(shapes["inpainter.pth"]) - n_seq
    assert len(refiner.state_dict()) * 2 == len(shapes["refiner.pth"])  # (bar,u,v,bias) -> (weight,bias)


def test_fold_spectral_norm_matches_one_power_iteration():
    gen = torch.Generator().manual_seed(1)
    w = torch.randn(6, 4, 3, 3, generator=gen)
    u = torch.randn(6, generator=gen)
    u = u / u.norm()
    m = w.view(6, -1)
    v = m.t() @ u
    v = v / (v.norm() + 1e-12)
    u2 = m @ v
    u2 = u2 / (u2.norm() + 1e-12)
    sigma = u2 @ (m @ v)
    torch.testing.assert_close(fold_spectral_norm(w, u), w / sigma)
    assert not torch.allclose(fold_spectral_norm(w, u), w)


def test_wrong_and_broken_checkpoints_give_one_line_errors(tmp_path):
    folder = coordinpaint_dir()
    with pytest.raises(WeightsError, match="a refiner checkpoint, but the inpainter was expected"):
        load_official_inpainter(folder / "refiner.pth")
    with pytest.raises(WeightsError, match="an inpainter checkpoint, but the refiner was expected"):
        load_official_refiner(folder / "inpainter.pth")
    with pytest.raises(WeightsError, match="refiner checkpoint, not an inpainter"):  # state dicts given directly
        inpainter_from_state(torch.load(folder / "refiner.pth", weights_only=True))
    truncated = tmp_path / "inpainter.pth"
    truncated.write_bytes((folder / "inpainter.pth").read_bytes()[:5000])
    with pytest.raises(WeightsError, match="truncated or corrupt") as info:
        load_official_inpainter(truncated)
    assert "\n" not in str(info.value)
    with pytest.raises(WeightsError, match="not found"):
        load_official_refiner(tmp_path / "nope.pth")
    state = torch.load(folder / "inpainter.pth", weights_only=True)
    del state["gate7.conv_m.weight"]
    state["gate3.norm.bias"] = torch.zeros(3)
    with pytest.raises(WeightsError, match=r"missing keys: gates\.6\.gate_conv\.weight.*shape mismatch"):
        inpainter_from_state(state)


@pytest.mark.parametrize("hw", [(192, 256), (64, 96)])
def test_models_run_on_non_square_inputs(hw):
    h, w = hw
    inpainter, refiner = Inpainter(ngf=4).eval(), Refiner(ngf=8).eval()
    with torch.no_grad():
        assert inpainter(torch.rand(2, 5, h, w)).shape == (2, 2, h, w)
        out = refiner(torch.rand(1, 8, h, w), torch.rand(1, 10, h, w), torch.rand(1, 2, h, w) * 2 - 1,
                      torch.ones(1, 1, h, w))
    assert out.shape == (1, 3, h, w)
