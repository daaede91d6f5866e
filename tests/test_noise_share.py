"""The frames' noise shared across the clip (``noise_share``, :func:`evedit.editing.editors.frame_noise`)."""

from __future__ import annotations

import json
import shutil
import numpy as np
import pytest
import torch

from evedit.editing.editors import NOISE_CLIP, frame_noise
from evedit.errors import EveditError
from evedit.io import write_video
from evedit.world import make_example
from model_utils import run_cli as run
from model_utils import spec_as

INSTRUCTION = "make the blue circle red"
FAST = dict(task="color", first_frame_steps=2, progress=False)
SHAPE = (4, 8, 8)

pytestmark = pytest.mark.usefixtures("one_thread")  # conftest: one intra-op thread


@pytest.fixture(scope="module")
def clip():
    return make_example(7, "color").clip[:3]  # (3, 64, 64, 3)


def test_share_zero_is_each_frames_own_noise_and_one_is_the_same_noise_for_all():
    own = frame_noise(3, NOISE_CLIP, range(5), SHAPE)
    assert torch.equal(frame_noise(3, NOISE_CLIP, range(5), SHAPE, share=0.0), own)
    assert not torch.equal(own[:, :, 0], own[:, :, 1])
    same = frame_noise(3, NOISE_CLIP, range(5), SHAPE, share=1.0)
    assert all(torch.equal(same[:, :, 0], same[:, :, f]) for f in range(1, 5))
    assert not torch.equal(same[:, :, 0], own[:, :, 0])
    # a frame's noise does not depend on the window it is drawn in, shared or not
    assert torch.equal(frame_noise(3, NOISE_CLIP, range(2, 4), SHAPE, share=0.5),
                       frame_noise(3, NOISE_CLIP, range(5), SHAPE, share=0.5)[:, :, 2:4])


def test_a_mixed_share_keeps_unit_variance_and_correlates_frames_by_the_share():
    noise = frame_noise(0, NOISE_CLIP, range(2), (4, 64, 64), share=0.5)
    a, b = noise[0, :, 0].flatten(), noise[0, :, 1].flatten()
    assert abs(float(a.std()) - 1.0) < 0.03 and abs(float(b.std()) - 1.0) < 0.03
    assert abs(float(torch.corrcoef(torch.stack([a, b]))[0, 1]) - 0.5) < 0.05


def test_the_pipeline_takes_the_share_from_the_options_or_the_model(pipe, clip):
    own = pipe(clip, INSTRUCTION, **FAST)
    assert own.options.noise_share == 0.0  # the tiny model's spec: the ModelSpec default
    same = pipe(clip, INSTRUCTION, noise_share=1.0, **FAST)
    assert same.options.noise_share == 1.0 and not np.array_equal(same.frames, own.frames)
    with spec_as(pipe, noise_share=1.0):
        by_model = pipe(clip, INSTRUCTION, **FAST)
    assert by_model.options.noise_share == 1.0 and np.array_equal(by_model.frames, same.frames)


@pytest.mark.parametrize("share", [-0.1, 1.5, float("nan"), True])
def test_the_api_refuses_a_share_outside_zero_to_one(pipe, clip, share):
    with pytest.raises(EveditError, match="--noise-share must be a number from 0"):
        pipe(clip, INSTRUCTION, noise_share=share, **FAST)


def test_the_cli_refuses_a_bad_share_and_a_bad_manifest_in_one_sentence(model_dir, clip, tmp_path, capsys):
    source = write_video(tmp_path / "in.mkv", clip, 8.0)
    out = tmp_path / "out.mkv"
    code, _, err = run(["edit", source, INSTRUCTION, "-o", out, "--model", model_dir, "--noise-share", "2",
                        "-q"], capsys)
    assert code != 0 and "--noise-share must be a number from 0" in err and "Traceback" not in err
    folder = tmp_path / "model"
    shutil.copytree(model_dir, folder)
    manifest = json.loads((folder / "evedit_model.json").read_text())
    manifest["spec"]["noise_share"] = 3
    (folder / "evedit_model.json").write_text(json.dumps(manifest))
    code, _, err = run(["edit", source, INSTRUCTION, "-o", out, "--model", folder, "-q"], capsys)
    assert code != 0 and "sets noise_share to 3" in err and "Traceback" not in err
    assert not out.exists()


def test_eval_hands_its_noise_share_to_every_pipeline_editor_and_records_it(tmp_path):
    from evedit.eval.editors import resolve_editors
    from evedit.eval.entry import EvalOptions, load_editors

    editors = resolve_editors(["eve", "pnp", "identity"], "shapeworld", noise_share=0.0)
    assert editors["eve"].call_kwargs == {"noise_share": 0.0} and editors["pnp"].call_kwargs == {"noise_share": 0.0}
    assert resolve_editors(["eve"], "shapeworld")["eve"].call_kwargs == {}  # the model's
    with pytest.raises(EveditError, match="--noise-share must be a number from 0"):
        load_editors(EvalOptions(editors=("eve",), noise_share=2.0, out=tmp_path / "e"))


def test_set_spec_records_a_chosen_default_in_the_manifest_atomically(model_dir, tmp_path):
    from evedit.models import folder_spec
    from evedit.models.folder import set_spec

    folder = tmp_path / "model"
    shutil.copytree(model_dir, folder)
    set_spec(folder, noise_share=1.0)
    assert folder_spec(folder).noise_share == 1.0 and [p.name for p in folder.glob(".*tmp*")] == []
    with pytest.raises(EveditError, match="does not exist"):
        set_spec(tmp_path / "none", noise_share=1.0)
