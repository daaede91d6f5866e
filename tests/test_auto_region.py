"""``--region auto``: the edit region found by the edit adapter (evedit.editing.auto_region)."""

import shutil

import numpy as np
import pytest
import torch

from evedit.editing import EditPipeline
from evedit.editing.auto_region import estimate_region, grow, region_mode, threshold_map
from evedit.errors import EveditError
from evedit.io import write_video
from evedit.models.presets import ModelSpec
from evedit.world import make_example
from model_utils import run_cli as run

INSTRUCTION = "make the blue circle red"
FAST = dict(first_frame_steps=1, steps=1, seed=1, progress=False)

pytestmark = pytest.mark.usefixtures("one_thread")  # conftest: one intra-op thread


@pytest.fixture(scope="module")
def frames():
    return make_example(7, "color").clip  # 8 frames, 64x64


@pytest.fixture(scope="module")
def region_model(model_dir, tmp_path_factory):
    """``model_dir`` with ``spec.region_tasks = ["color"]`` in its manifest."""
    from evedit.eval.report import write_json
    from evedit.models.folder import MANIFEST, read_manifest

    folder = tmp_path_factory.mktemp("region-model") / "model"
    shutil.copytree(model_dir, folder)
    manifest = read_manifest(folder)
    manifest["spec"]["region_tasks"] = ["color"]
    write_json(folder / MANIFEST, manifest)
    return folder


def test_threshold_map_keeps_what_exceeds_half_of_each_frames_peak():
    d = torch.zeros(1, 1, 2, 2, 2)
    d[0, 0, 0] = torch.tensor([[1.0, 0.4], [0.6, 0.0]])  # frame 0: peak 1
    d[0, 0, 1] = torch.tensor([[10.0, 4.0], [6.0, 5.0]])  # frame 1: peak 10, its own scale
    want = torch.tensor([[[1.0, 0.0], [1.0, 0.0]], [[1.0, 0.0], [1.0, 0.0]]])
    assert torch.equal(threshold_map(d)[0, 0], want)
    assert threshold_map(torch.zeros(1, 1, 1, 2, 2)).sum() == 0  # no text direction: no region


def test_grow_adds_cells_on_every_side_within_each_frame():
    r = torch.zeros(1, 1, 2, 5, 5)
    r[0, 0, 0, 2, 2] = 1
    grown = grow(r, 1)
    assert torch.equal(grown[0, 0, 0, 1:4, 1:4], torch.ones(3, 3)) and grown[0, 0, 0].sum() == 9
    assert grown[0, 0, 1].sum() == 0  # frame 1 had none
    assert torch.equal(grow(r, 0), r)


def test_region_mode_asked_then_the_models_tasks():
    assert region_mode(None, "color", ("color",)) == "auto"
    assert region_mode(None, "texture", ("color",)) == "full"
    assert region_mode(None, None, ("color",)) == "full"  # a model without task labels
    assert region_mode("full", "color", ("color",)) == "full"
    assert region_mode("auto", "texture", ()) == "auto"
    spec = ModelSpec(region_tasks=("color", "remove"))
    assert ModelSpec.from_dict(spec.to_dict()) == spec
    assert ModelSpec.from_dict({}).region_tasks == ()  # manifests written before the field


def test_estimate_region_is_binary_per_frame_and_seeded(pipe, frames):
    """Shape (1, 1, F, h, w), 0/1, every frame's peak cell inside; the same noise, the same region."""
    from evedit.editing.conditioning import encode_source, encode_texts, resolve_task
    from evedit.models import Conditioning

    model = pipe.model
    video = torch.from_numpy(frames).permute(3, 0, 1, 2)[None].float() / 127.5 - 1
    latents, source = encode_source(model, video)
    caption, instruction, null = encode_texts(model, INSTRUCTION, None)
    _, _, label = resolve_task(model, "color", INSTRUCTION)
    cond = Conditioning(caption=caption, instruction=instruction, task=label, source=source)
    noises = [torch.randn(latents.shape, generator=torch.Generator().manual_seed(s)) for s in (0, 1)]
    with torch.inference_mode():
        region = estimate_region(model, cond, null, latents, noises)
        again = estimate_region(model, cond, null, latents, noises)
    assert region.shape == (1, 1, *latents.shape[2:])
    assert set(region.unique().tolist()) <= {0.0, 1.0}
    assert (region.amax(dim=(-2, -1)) == 1).all()  # each frame's strongest cell is in its region
    assert torch.equal(region, again)


def test_full_is_the_whole_frame_edit_and_auto_keeps_the_input_around_the_region(pipe, frames):
    plain = pipe(frames, INSTRUCTION, task="color", **FAST)
    full = pipe(frames, INSTRUCTION, task="color", region="full", **FAST)
    auto = pipe(frames, INSTRUCTION, task="color", region="auto", **FAST)
    again = pipe(frames, INSTRUCTION, task="color", region="auto", **FAST)
    assert plain.options.region == full.options.region == "full"  # the tiny model has no region_tasks
    assert np.array_equal(plain.frames, full.frames)
    assert auto.options.region == "auto" and np.array_equal(auto.frames, again.frames)
    # Outside the region the latents are the input's, so the auto edit is nearer the input, and its
    # pixels there are the input's exactly (a whole-frame edit through the codec keeps almost none).
    to_input = lambda r: np.abs(r.frames.astype(int) - frames).mean()  # noqa: E731
    assert to_input(auto) < to_input(full)
    same = lambda r: np.all(r.frames == frames, axis=-1).mean()  # noqa: E731
    assert same(auto) > 0.2 and same(auto) > 10 * same(full)


def test_pixel_mask_maps_latent_cells_back_to_the_frame():
    from evedit.editing.frames import Fit
    from evedit.editing.region import pixel_mask

    cells = torch.zeros(16, 16)
    cells[2, 5] = 1  # one cell of 4x4 px on a 64 px square
    square = pixel_mask(cells, Fit(64, 64, 64, "crop"))
    want = np.zeros((64, 64), np.float32)
    want[8:12, 20:24] = 1
    assert np.array_equal(square, want)
    wide = pixel_mask(torch.ones(16, 16), Fit(64, 96, 64, "crop"))  # the model sees the middle 64 columns
    assert wide.shape == (64, 96) and wide[:, 16:80].all() and not wide[:, :16].any() and not wide[:, 80:].any()


def test_the_models_region_tasks_choose_the_default(region_model, frames):
    pipe = EditPipeline.from_pretrained(region_model, device="cpu")
    color = pipe(frames, INSTRUCTION, task="color", **FAST)
    assert color.options.region == "auto"
    assert np.array_equal(color.frames, pipe(frames, INSTRUCTION, task="color", region="auto", **FAST).frames)
    texture = pipe(frames, "give the circle stripes", task="texture", **FAST)
    assert texture.options.region == "full"
    assert pipe(frames, INSTRUCTION, task="color", mask=np.ones((64, 64), bool), **FAST).options.region == "full"


def test_bad_region_and_region_with_mask_are_one_sentence(pipe, frames, model_dir, tmp_path, capsys):
    with pytest.raises(EveditError, match="--region"):
        pipe(frames, INSTRUCTION, task="color", region="everywhere", **FAST)
    with pytest.raises(EveditError, match="--mask"):
        pipe(frames, INSTRUCTION, task="color", region="auto", mask=np.ones((64, 64), bool), **FAST)
    write_video(tmp_path / "in.mp4", frames, 8)
    code, _, err = run(["edit", tmp_path / "in.mp4", INSTRUCTION, "-o", tmp_path / "x.mp4", "--model", model_dir,
                        "--region", "everywhere"], capsys)
    assert code == 1 and "--region" in err and "Traceback" not in err
    assert not (tmp_path / "x.mp4").exists()
