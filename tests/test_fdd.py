"""Factorized Diffusion Distillation: losses with known answers, the steps, smoke runs, resume."""

from dataclasses import replace

import pytest
import torch

from evedit.cli import main
from evedit.errors import EveditError
from evedit.losses import hinge_d_loss, hinge_g_loss, sds_loss, sds_weight
from evedit.models.lora import lora_parameters
from evedit.training.fdd import ABLATIONS, FDDConfig, align
from evedit.training.fdd.loss import rollout_timesteps
from model_utils import tiny_model

TINY = dict(steps_sds=1, steps_adv=1, batch_size=1, real_steps=1, bank_per_item=1, k=2,
            data={"kind": "shapeworld", "length": 4, "frames": 2}, sample_every=0, ckpt_every=1,
            log_every=1, disc_dim=16)


def world_model(minilm):
    from evedit.world import TASKS

    return tiny_model(text_encoder=minilm, num_tasks=len(TASKS))


@pytest.fixture
def teacher(minilm):
    return world_model(minilm)


def test_sds_gradient_equals_its_analytic_form():
    x0 = torch.randn(2, 4, 3, 5, 5, requires_grad=True)
    eps_hat, noise = torch.randn(2, 4, 3, 5, 5), torch.randn(2, 4, 3, 5, 5)
    alpha_bar = torch.tensor([0.3, 0.9]).view(2, 1, 1, 1, 1)
    for kind, want_w in (("sigma", (1 - alpha_bar).sqrt()), ("sigma2", 1 - alpha_bar),
                         ("uniform", torch.ones_like(alpha_bar))):
        x0.grad = None
        w = sds_weight(kind, alpha_bar)
        assert torch.allclose(w, want_w)
        sds_loss(x0, eps_hat, noise, w).backward()
        assert torch.allclose(x0.grad, want_w * (eps_hat - noise) / x0.numel(), atol=1e-7)


def test_hinge_losses_have_the_right_signs():
    good_real, good_fake = torch.full((4,), 2.0), torch.full((4,), -2.0)
    assert hinge_d_loss(good_real, good_fake) == 0  # a confident, correct critic has no loss
    assert hinge_d_loss(good_fake, good_real) == 6  # a wrong critic is penalised
    fake = torch.zeros(4, requires_grad=True)
    hinge_g_loss(fake).backward()
    assert torch.all(fake.grad < 0), "the generator lowers its loss by raising D(fake)"
    fake = torch.zeros(4, requires_grad=True)
    real = torch.zeros(4, requires_grad=True)
    hinge_d_loss(real, fake).backward()
    assert torch.all(real.grad < 0) and torch.all(fake.grad > 0)


def test_rollout_timesteps():
    g = torch.Generator().manual_seed(0)
    cfg = FDDConfig()
    draws = {tuple(rollout_timesteps(cfg, g)) for _ in range(50)}
    assert all(d[0] == 999 and 333 <= d[1] <= 666 and d[2] <= 333 for d in draws) and len(draws) > 40
    assert rollout_timesteps(replace(cfg, timesteps="fixed"), g) == [999, 666, 332]
    firsts = {rollout_timesteps(replace(cfg, kbin_first="random"), g)[0] for _ in range(20)}
    assert len(firsts) > 1 and all(666 <= f <= 999 for f in firsts)


def test_only_lora_and_heads_change(teacher, tmp_path):
    cfg = FDDConfig(**TINY, out=str(tmp_path / "run"))
    from evedit.training.fdd import FDDStage
    from evedit.training.fdd.stage import train_config
    from evedit.training.loop import Trainer

    stage = FDDStage(cfg, teacher=teacher)
    before = {n: p.detach().clone() for n, p in teacher.named_parameters()}
    heads = {id(p) for p in stage.state.d_params}
    head_before = [p.detach().clone() for p in stage.state.d_params]
    Trainer(stage, train_config(stage.cfg), progress=False).fit()
    lora = {id(p) for p in lora_parameters(teacher.motion_unet)}
    changed = [n for n, p in teacher.named_parameters()
               if n in before and not torch.equal(before[n], p)]
    assert changed, "the LoRA must train"
    assert all("lora_" in n for n in changed), changed
    params = dict(teacher.named_parameters())
    assert all(id(params[n]) in lora for n in changed)
    after = stage.state.d_params
    assert any(not torch.equal(a, b) for a, b in zip(head_before, after)) and heads
    assert (tmp_path / "run" / "model" / "lora" / "alignment_lora.safetensors").is_file()


def test_resume_continues_exactly(teacher, tmp_path, minilm):
    cfg = FDDConfig(**{**TINY, "steps_sds": 2}, out=str(tmp_path / "full"))
    align(cfg, teacher=teacher, progress=False)
    full = [p.detach().clone() for p in lora_parameters(teacher.motion_unet)]

    second = world_model(minilm)
    cut = replace(cfg, out=str(tmp_path / "cut"), steps_sds=2, steps_adv=0)
    align(cut, teacher=second, progress=False)  # stops after 2 of 3 steps
    third = world_model(minilm)
    align(replace(cfg, out=str(tmp_path / "cut")), resume=True, teacher=third, progress=False)
    resumed = lora_parameters(third.motion_unet)
    assert all(torch.allclose(a, b, atol=1e-6) for a, b in zip(full, resumed))


def test_disc_warmup_trains_the_critic_before_the_adversarial_terms(teacher, tmp_path):
    import json

    cfg = FDDConfig(**{**TINY, "steps_sds": 3, "disc_warmup": 2}, out=str(tmp_path / "warm"))
    align(cfg, teacher=teacher, progress=False)
    logs = [json.loads(line) for line in (tmp_path / "warm" / "metrics.jsonl").read_text().splitlines()]
    assert [("d_total" in r, "g_edit" in r) for r in logs] == [
        (False, False), (True, False), (True, False), (True, True)]  # step 1 SDS, 2-3 warm-up, 4 adversarial
    assert all(r["g_total"] == pytest.approx(0.5 * 2.5 * (r["sds_edit"] + r["sds_video"]), rel=1e-5)
               for r in logs[:3])  # the student's loss stays SDS only during the warm-up


def test_term_gradient_norms_reach_the_log(teacher, tmp_path):
    import json

    cfg = FDDConfig(**{**TINY, "steps_sds": 3, "log_every": 2, "term_grads_every": 2}, out=str(tmp_path / "g"))
    align(cfg, teacher=teacher, progress=False)
    logs = [json.loads(line) for line in (tmp_path / "g" / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in logs] == [2, 4]
    assert {"gradnorm_sds_edit", "gradnorm_sds_video"} <= set(logs[0])
    assert {"gradnorm_g_edit", "gradnorm_g_video", "gradnorm_sds_edit"} <= set(logs[1])


@pytest.mark.parametrize("ablation", [a for a in ABLATIONS if a != "none"])
def test_each_ablation_runs(teacher, tmp_path, ablation):
    """Each ablation exports a model as trained: the LoRA at strength 1, the student unguided, even
    when the aligned model edits otherwise; the teachers' extra parts (ShapeCLIP, the task
    classifier) go with it, Random Init's separate student included."""
    import json

    extra = tmp_path / "clf"
    extra.mkdir()
    (extra / "config.json").write_text("{}")
    teacher.extras = {"task_classifier": extra}
    teacher.spec = replace(teacher.spec, lora_scale=0.25, student_guidance=2.0)
    folder = align(FDDConfig(**TINY, ablation=ablation, out=str(tmp_path / ablation)), teacher=teacher,
                   progress=False)
    manifest = json.loads((folder / "evedit_model.json").read_text())
    assert (manifest["spec"]["lora_scale"], manifest["spec"]["student_guidance"]) == (1.0, 1.0)
    assert manifest["extras"] == {"task_classifier": "task_classifier"}
    assert (folder / "task_classifier" / "config.json").is_file()


def test_align_cli_smoke_and_errors(tmp_path, capsys, monkeypatch):
    import yaml

    recipe = tmp_path / "align.yaml"
    recipe.write_text(yaml.safe_dump({**TINY, "data": TINY["data"]}))
    code = main(["align", "--config", str(recipe), "--out", str(tmp_path / "cli"), "--max-steps", "2",
                 "--quiet"])
    assert code == 0
    assert "aligned model:" in capsys.readouterr().out
    code = main(["align", "--config", str(recipe), "--out", str(tmp_path / "cli"), "--quiet"])
    err = capsys.readouterr().err
    assert code == 1 and "already holds" in err
    code = main(["align", "--config", str(recipe), "--ablation", "bogus", "--out", str(tmp_path / "b")])
    assert code == 1 and "Unknown ablation" in capsys.readouterr().err


def test_a_shipped_lora_is_reset_unless_continued(teacher):
    from evedit.training.fdd.run import build_state

    teacher.add_alignment_lora(4)
    with torch.no_grad():
        for p in lora_parameters(teacher.motion_unet):
            p.fill_(0.5)
    state = build_state(FDDConfig(**{**TINY, "steps_adv": 0, "lora_rank": 4}), teacher)
    b_weights = [p for p in lora_parameters(state.student.motion_unet) if p.shape[1] == 4]
    assert b_weights and all(torch.all(p == 0) for p in b_weights)  # B back at zero: student == pnp
    with torch.no_grad():
        for p in lora_parameters(teacher.motion_unet):
            p.fill_(0.5)
    state = build_state(FDDConfig(**{**TINY, "steps_adv": 0, "lora_rank": 4, "lora_init": "continue"}), teacher)
    assert all(torch.all(p == 0.5) for p in lora_parameters(state.student.motion_unet))


def test_term_gradient_norms_are_each_terms_own():
    from evedit.training.fdd.loss import term_grad_norms

    w = torch.nn.Parameter(torch.tensor([1.0, 2.0]))
    terms = {"sds_edit": (w ** 2).sum(), "g_edit": 3 * w[0]}
    norms = term_grad_norms(terms, [w], {"sds_edit": 0.5, "g_edit": 2.0})
    assert norms["gradnorm_sds_edit"] == pytest.approx(float(torch.tensor([1.0, 2.0]).norm()))  # 0.5 * 2w
    assert norms["gradnorm_g_edit"] == pytest.approx(6.0)
    assert w.grad is None  # diagnostics leave no gradient behind


# Figures of the tiny recipe under the loop FDD had before it ran on the shared training loop
# (same seed and teacher): moving FDD onto the shared loop must not move them.
BEFORE = {1: {"sds_edit": 0.10277155786752701, "sds_video": 0.10831951349973679, "g_total": 0.26386383175849915,
              "g_grad_norm": 0.027635401114821434},
          2: {"g_total": 0.14983081817626953, "gradnorm_sds_edit": 0.012021614238619804,
              "d_total": 2.0520262718200684, "d_edit_real": -0.08842288702726364, "d_grad_norm": 0.5327853560447693},
          3: {"g_edit": 0.06696431338787079, "g_video": 0.23509588837623596, "g_total": 0.3894483149051666,
              "d_total": 1.9491256475448608},
          4: {"g_total": 0.1885020136833191, "gradnorm_g_video": 0.026086630299687386,
              "d_total": 1.9886564016342163, "d_grad_norm": 0.656805694103241}}


def test_the_shared_loop_keeps_the_fdd_figures(minilm, tmp_path):
    import json
    from pathlib import Path

    from evedit.training.fdd.entry import load_fdd_config

    recipe = Path(__file__).resolve().parents[1] / "configs" / "tiny" / "align.yaml"
    cfg = replace(load_fdd_config(recipe), out=str(tmp_path / "run"), steps_sds=2, steps_adv=2, disc_warmup=1,
                  term_grads_every=2, log_every=1)
    align(cfg, teacher=world_model(minilm), progress=False)
    logged = {r["step"]: r for r in map(json.loads, (tmp_path / "run" / "metrics.jsonl").read_text().splitlines())}
    for step, figures in BEFORE.items():
        # rel 1e-5: the same figures up to float summation order (thread count and load moved
        # g_edit by 1.1e-6 relative between runs of the same code)
        assert {k: logged[step][k] for k in figures} == pytest.approx(figures, rel=1e-5), step


@pytest.mark.parametrize("routing", ["paper", "empty"])
def test_empty_routing_aligns_on_the_empty_caption(teacher, routing):
    """``prompt_routing="empty"``: the student and both teachers get the empty text, as an edit from
    the instruction alone does; ``paper``: the output caption."""
    from torch.utils.data import default_collate

    from evedit.training.fdd.teachers import encode_batch
    from evedit.world import AlignmentDataset

    teacher.spec = replace(teacher.spec, prompt_routing=routing)
    data = AlignmentDataset("val", 2, config=None)
    ab = encode_batch(teacher, default_collate([data[0], data[1]]))
    empty = teacher.text_encoder(["", ""])
    assert torch.allclose(ab.caption, empty.hidden_states) == (routing == "empty")
    assert torch.allclose(ab.caption_pooled, empty.pooled) == (routing == "empty")
    assert not torch.allclose(ab.instruction, empty.hidden_states)



def test_video_teacher_can_read_the_output_caption_while_the_student_reads_the_empty_one(teacher):
    """``video_teacher_caption: output``: under the empty routing the video teacher's condition
    carries each item's output caption; the student's and the edit teacher's stay empty."""
    from torch.utils.data import default_collate

    from evedit.training.fdd.teachers import encode_batch
    from evedit.world import AlignmentDataset

    teacher.spec = replace(teacher.spec, prompt_routing="empty")
    items = [AlignmentDataset("val", 2, config=None)[i] for i in (0, 1)]
    ab = encode_batch(teacher, default_collate(items), "output")
    empty, output = teacher.text_encoder(["", ""]), teacher.text_encoder([i["output_caption"] for i in items])
    assert torch.allclose(ab.student_cond().caption, empty.hidden_states)
    assert torch.allclose(ab.edit_cond().caption, empty.hidden_states)
    assert torch.allclose(ab.video_cond().caption, output.hidden_states)
    assert torch.allclose(encode_batch(teacher, default_collate(items)).video_cond().caption, empty.hidden_states)
    with pytest.raises(EveditError, match="video_teacher_caption"):
        FDDConfig(**{**TINY, "video_teacher_caption": "input"}).effective()

def test_teacher_weights_weigh_each_teachers_terms(teacher, tmp_path):
    import json

    cfg = FDDConfig(**{**TINY, "teachers": {"edit": 0.3, "video": 0.7}}, out=str(tmp_path / "w"))
    align(cfg, teacher=teacher, progress=False)
    sds, adv = [json.loads(line) for line in (tmp_path / "w" / "metrics.jsonl").read_text().splitlines()]
    assert sds["g_total"] == pytest.approx(2.5 * (0.3 * sds["sds_edit"] + 0.7 * sds["sds_video"]), rel=1e-5)
    want = 0.3 * (adv["g_edit"] + 2.5 * adv["sds_edit"]) + 0.7 * (adv["g_video"] + 2.5 * adv["sds_video"])
    assert adv["g_total"] == pytest.approx(want, rel=1e-5)
    assert adv["d_total"] == pytest.approx(adv["d_edit"] + adv["d_video"], rel=1e-6)


def test_one_teacher_alone_has_only_its_terms_and_critic(teacher, tmp_path):
    import json

    from safetensors import safe_open

    cfg = FDDConfig(**{**TINY, "teachers": {"edit": 1.0}}, out=str(tmp_path / "edit"))
    align(cfg, teacher=teacher, progress=False)
    logs = [json.loads(line) for line in (tmp_path / "edit" / "metrics.jsonl").read_text().splitlines()]
    assert {"sds_edit", "g_edit", "d_edit"} <= set(logs[-1])
    assert not any("video" in key for r in logs for key in r)
    state = next((tmp_path / "edit" / "checkpoints").glob("step_*/trainable.safetensors"))
    with safe_open(str(state), "pt") as f:
        prefixes = {key.split(".")[0] for key in f.keys()}
    assert "d_edit" in prefixes and "d_video" not in prefixes


def test_a_teachers_mapping_in_a_recipe_replaces_the_default(tmp_path):
    """Merged key by key, ``teachers: {edit: 1.0}`` would keep the default's video teacher."""
    import yaml

    from evedit.training.fdd.entry import load_fdd_config

    recipe = tmp_path / "align.yaml"
    recipe.write_text(yaml.safe_dump({"teachers": {"edit": 1.0}, "data": {"kind": "store", "path": "s"}}))
    cfg = load_fdd_config(recipe)
    assert cfg.teachers == {"edit": 1.0} and cfg.data == {"kind": "store", "path": "s"}
    assert load_fdd_config(None).teachers == {"edit": 0.5, "video": 0.5}


def test_unknown_teachers_are_refused_in_one_sentence(tmp_path, capsys):
    import yaml

    recipe = tmp_path / "align.yaml"
    recipe.write_text(yaml.safe_dump({**TINY, "teachers": {"edit": 0.5, "sketch": 0.5}}))
    assert main(["align", "--config", str(recipe), "--out", str(tmp_path / "run"), "--quiet"]) == 1
    err = capsys.readouterr().err
    assert "teachers must map some of edit, video" in err and "Traceback" not in err
    assert not (tmp_path / "run").exists()


def test_every_teacher_kind_has_its_terms_and_its_critic():
    from evedit.training.fdd.config import TEACHER_KINDS
    from evedit.training.fdd.loss import TEACHER_TERMS
    from evedit.training.fdd.run import CRITICS

    assert set(TEACHER_KINDS) == set(TEACHER_TERMS) == set(CRITICS)


def test_guidance_distillation_term_is_weighed_and_vanishes_without_guidance(teacher, tmp_path):
    """``guide_distill``: the student's rollout against the guided plug-and-play rollout from the
    same noise and timesteps. At the first step the LoRA is zero, so without guidance (scales 1)
    the two rollouts are the same computation and the term is 0; with the teachers' guidance it is not."""
    import json

    def first_line(out, **kw):
        cfg = FDDConfig(**{**TINY, "guide_distill": 3.0, **kw}, out=str(tmp_path / out))
        align(cfg, teacher=teacher, progress=False)
        return json.loads((tmp_path / out / "metrics.jsonl").read_text().splitlines()[0])

    plain = first_line("plain", edit_image_scale=1.0, edit_text_scale=1.0)
    assert plain["guide"] == pytest.approx(0.0, abs=1e-12)
    guided = first_line("guided")
    assert guided["guide"] > 1e-6
    want = 2.5 * (0.5 * guided["sds_edit"] + 0.5 * guided["sds_video"]) + 3.0 * guided["guide"]
    assert guided["g_total"] == pytest.approx(want, rel=1e-5)
    off = first_line("off", guide_distill=0.0)
    assert "guide" not in off and off["sds_edit"] == pytest.approx(guided["sds_edit"], rel=1e-6)


def test_a_lora_rank_other_than_the_folders_is_refused(teacher):
    """A folder's alignment LoRA is reset or continued at its own rank: asking for another is one
    sentence, not a run at the folder's rank."""
    from evedit.training.fdd.run import build_state

    teacher.add_alignment_lora(8)
    with pytest.raises(EveditError, match="lora_rank is 32 but the model folder's alignment LoRA has rank 8"):
        build_state(FDDConfig(**{**TINY, "steps_adv": 0, "lora_rank": 32}), teacher)
    assert build_state(FDDConfig(**{**TINY, "steps_adv": 0, "lora_rank": 8}), teacher).g_params


def test_a_guided_student_rolls_out_as_guided_plug_and_play_and_is_exported_guided(teacher, tmp_path):
    """``student_guidance``: the rollout is ip2p dual guided (image ``edit_image_scale``, text
    ``student_guidance``). With the LoRA at zero it is then the same computation as the guidance
    term's target (plug-and-play guided at the teachers' scales), so that term is 0 where the unguided
    student's is not; the export samples EVE at the scale it trained with."""
    import json

    from evedit.models import load_model

    def run(out, **kw):
        cfg = FDDConfig(**{**TINY, "guide_distill": 1.0, "steps_adv": 0, **kw}, out=str(tmp_path / out))
        align(cfg, teacher=teacher, progress=False)
        return json.loads((tmp_path / out / "metrics.jsonl").read_text().splitlines()[0])

    assert run("plain")["guide"] > 1e-6
    assert run("guided", student_guidance=2.0)["guide"] == pytest.approx(0.0, abs=1e-12)
    assert load_model(str(tmp_path / "guided" / "model")).spec.student_guidance == 2.0
    with pytest.raises(EveditError, match="student_guidance must be a number from 1"):
        FDDConfig(**{**TINY, "student_guidance": 0.5}).effective()


def test_the_rollout_noise_can_be_shared_by_a_clips_frames_and_the_export_samples_so(teacher, tmp_path):
    """``noise_share``: 0 draws the rollout's noise as before (no extra numbers from the generator);
    1 gives every frame of a clip the same noise (clips still differ); the export records it."""
    from evedit.models import load_model
    from evedit.training.fdd.loss import rollout_noise

    shape = (2, 4, 3, 8, 8)
    assert torch.equal(rollout_noise(shape, 0.0, torch.Generator().manual_seed(1)),
                       torch.randn(shape, generator=torch.Generator().manual_seed(1)))
    same = rollout_noise(shape, 1.0, torch.Generator().manual_seed(1))
    assert torch.equal(same[:, :, 0], same[:, :, 2]) and not torch.equal(same[0], same[1])
    align(FDDConfig(**{**TINY, "steps_adv": 0, "noise_share": 1.0}, out=str(tmp_path / "s")), teacher=teacher,
          progress=False)
    assert load_model(str(tmp_path / "s" / "model")).spec.noise_share == 1.0
    with pytest.raises(EveditError, match="noise_share must be a number from 0 to 1"):
        FDDConfig(**{**TINY, "noise_share": 1.5}).effective()


def test_align_region_keeps_the_rollout_and_the_teachers_frames_to_the_found_region(teacher, tmp_path):
    """``align_region``: on the model's region tasks the rollout, the edit teacher's first frame and
    its reals equal the input's latents outside the region the edit adapter finds (as ``--region
    auto`` samples); other tasks' items keep every cell; a run trains and exports."""
    from torch.utils.data import default_collate

    from evedit.training.fdd.loss import FDDState, student_rollout
    from evedit.training.fdd.teachers import TeacherBank, encode_batch
    from evedit.world import AlignmentDataset

    items = [AlignmentDataset("val", 2, config=None)[i] for i in (0, 1)]
    first_task = teacher.spec.tasks[int(items[0]["task"])]
    teacher.spec = replace(teacher.spec, region_tasks=(first_task,))
    cfg = FDDConfig(**{**TINY, "align_region": True}).effective()
    ab = TeacherBank(teacher, cfg).fill(encode_batch(teacher, default_collate(items)), [0, 1], 0, with_reals=True)
    assert ab.region.shape == (2, 1, *ab.source.shape[2:])
    assert first_task != teacher.spec.tasks[int(items[1]["task"])]  # item 1's task edits whole frames
    outside = ab.region[0, 0] == 0
    assert outside.any() and (ab.region[1] == 1).all()
    state = FDDState(cfg, teacher, teacher, {}, [], [], torch.Generator().manual_seed(0))
    x0 = student_rollout(state, ab, [999, 500], torch.randn(ab.source.shape))
    for clip in (x0, ab.edit_real):
        assert torch.equal(clip[0][:, outside], ab.source[0][:, outside])
        assert not torch.equal(clip[0][:, ~outside], ab.source[0][:, ~outside])
    assert torch.equal(ab.first_frame[0][:, outside[0]], ab.source[0, :, 0][:, outside[0]])
    align(FDDConfig(**{**TINY, "align_region": True}, out=str(tmp_path / "r")), teacher=teacher, progress=False)
    assert (tmp_path / "r" / "model" / "evedit_model.json").exists()
