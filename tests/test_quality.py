"""``evedit model report`` on the shipped ShapeWorld model: quick figures, target bookkeeping, the card."""

import json
import shutil

import pytest

from evedit.cli import main
from evedit.models import shipped_shapeworld_folder
from evedit.training.quality import TARGETS
from evedit.training.quality_card import quality_markdown, write_report

SHIPPED = shipped_shapeworld_folder()
pytestmark = pytest.mark.skipif(not (SHIPPED / "evedit_model.json").is_file(),
                                reason="the trained ShapeWorld model is not in this checkout")


@pytest.fixture(scope="module")
def copy(tmp_path_factory):
    folder = tmp_path_factory.mktemp("report") / "model"
    shutil.copytree(SHIPPED, folder)
    return folder


@pytest.fixture(scope="module")
def quick(copy):
    """The CLI's quick report on a copy of the shipped folder (the real measurement, run once)."""
    assert main(["model", "report", "--model", str(copy), "--size", "quick"]) == 0
    return json.loads((copy / "quality.json").read_text())


def test_quick_report_measures_trained_parts(quick):
    # Random weights give about 10 dB, chance top-1 0.1 and task accuracy 1/14: these bounds fail on them.
    assert quick["codec"]["psnr"] > 20
    assert quick["task_classifier"]["heldout_phrasing_acc"] > 0.8
    assert quick["shapeclip"]["image_top1"] > 0.2  # 16 items: random weights give 0.1 +- 0.075
    assert set(quick["edit_teacher"]["psnr_per_task"]) >= {"color", "remove", "segment"}
    assert 0 < quick["video_teacher"]["clip_frame_generated"] <= 1.0001


def test_targets_are_compared_with_their_values(quick):
    for key, target in TARGETS.items():
        row = quick["targets"][key]
        assert row["target"] == target
        assert row["met"] == (None if row["value"] is None else row["value"] >= target)


def test_card_section_is_replaced_not_repeated(tmp_path, quick):
    folder = tmp_path / "model"
    (folder).mkdir()
    (folder / "README.md").write_text("# card\n\ntraining table\n")
    write_report(folder, quick)
    write_report(folder, quick)
    text = (folder / "README.md").read_text()
    assert text.count("## Quality") == 1 and text.startswith("# card") and "codec.psnr" in text
    assert json.loads((folder / "quality.json").read_text())["size"] == "quick"
    assert quality_markdown(quick) in text


def test_cli_report_refuses_a_folder_that_is_not_a_model(tmp_path, capsys):
    assert main(["model", "report", "--model", str(tmp_path)]) == 1
    assert "not a model folder" in capsys.readouterr().err


def test_cli_report_adds_the_figures_to_the_card(copy, quick):
    text = (copy / "README.md").read_text()
    assert text.count("## Quality") == 1 and f"| codec.psnr | {quick['codec']['psnr']:.3g} |" in text


def test_figures_are_deterministic(quick):
    from evedit.models import load_model
    from evedit.training.quality import SIZES, codec_quality

    again = codec_quality(load_model(SHIPPED), SIZES["quick"]["codec"])
    assert again["psnr"] == pytest.approx(quick["codec"]["psnr"], abs=1e-4)


def test_round_trip_keeps_more_the_less_it_is_noised():
    """SDEdit's round trip: barely noised, a frame comes back about as the codec alone gives it;
    noised to t=600 the backbone must invent much of it, and the figure falls well below."""
    import torch

    from evedit.models import load_model
    from evedit.training.quality import codec_quality, t2i_round_trip

    torch.manual_seed(0)
    model = load_model(SHIPPED)
    trip = t2i_round_trip(model, items=8, noise_levels=(5, 600), steps=10)
    codec = codec_quality(model, items=8)["psnr"]
    assert abs(trip["psnr_t5"] - codec) < 1.0
    assert trip["psnr_t600"] < codec - 3


def test_edits_finished_from_given_frames_keep_them_the_more_the_later_they_start():
    """guided_edits' ``start``: from the true edit noised to t = 999 (pure noise at zero terminal SNR)
    it is the edit from noise (to float error); from the truth at t = 200 it stays closer to the truth."""
    import torch
    from torch.utils.data import default_collate

    from evedit.models import load_model
    from evedit.training.quality import guided_edits
    from evedit.world import EditTripletDataset

    model = load_model(SHIPPED)
    data = EditTripletDataset("test", 2, tasks=("color",))
    batch = default_collate([data[i] for i in range(2)])
    truth = batch["output_image"]
    noise = guided_edits(model, batch, None, steps=5, seed=0)
    assert torch.allclose(noise, guided_edits(model, batch, None, steps=5, seed=0, start=(truth, 999)), atol=1e-4)
    late = guided_edits(model, batch, None, steps=5, seed=0, start=(truth, 200))
    assert (late - truth).pow(2).mean() < 0.8 * (noise - truth).pow(2).mean()  # 0.010 against 0.017 here
    with pytest.raises(ValueError, match="at or below"):
        guided_edits(model, batch, None, steps=5, seed=0, start=(truth, 100))


def test_sdedit_round_trip_is_the_codec_at_t0_and_keeps_less_from_more_noise():
    import torch

    from evedit.models import load_model
    from evedit.models.codec import decode_video, encode_video
    from evedit.training.quality import sdedit_round_trip
    from evedit.training.stages.common import psnr
    from evedit.world.datasets import ImageCaptionDataset

    torch.set_num_threads(1)
    model = load_model(SHIPPED)
    data = ImageCaptionDataset("test", 4)
    x = torch.stack([data[i]["image"] for i in range(4)])
    captions = [data[i]["caption"] for i in range(4)]
    codec = decode_video(model.vae, encode_video(model.vae, x[:, :, None]))[:, :, 0]
    g = torch.Generator().manual_seed(0)
    assert torch.equal(sdedit_round_trip(model, x, captions, 0, 5, 4.0, g), codec)
    kept = [psnr(sdedit_round_trip(model, x, captions, t, 5, 4.0, torch.Generator().manual_seed(0)), x).mean()
            for t in (200, 900)]
    assert kept[0] > kept[1] + 3  # from t = 900 little of the frame is left to keep


def test_report_gives_identity_beside_the_teacher(quick):
    ident = quick["edit_teacher"]["identity_psnr_per_task"]
    assert set(ident) == set(quick["edit_teacher"]["psnr_per_task"])
    # Returning the input is the floor: it scores low where the whole frame changes and well where
    # one object does; a floor computed against the wrong frames (output vs output) gives 100 dB.
    assert ident["invert"] < 12 < ident["color"] < 60
    assert "| Identity (input unchanged) |" in quality_markdown(quick)
