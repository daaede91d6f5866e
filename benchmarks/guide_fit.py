"""How closely EVE's student follows the guided plug-and-play edit, on alignment items it trained on
and on fresh ones: the isolating measurement of ``benchmarks/results/guide_distill.md``.

For each item: plug-and-play (both adapters, LoRA off) with the teachers' ip2p guidance (image 1.5,
text 2.0) edits from seeded noise at EVE's 3 trailing DDIM steps; the student (LoRA at each strength)
edits from the same noise unguided; the figure is the mean squared latent difference. "train" items
are the first ``--items`` of an ``align`` store the LoRA was trained on; "fresh" items are ShapeWorld
alignment items of the val split, rendered in the model's world::

    python benchmarks/guide_fit.py --model runs/align-gdonly/model --store stores/align-041 --items 12
"""

from __future__ import annotations

import argparse


def mse_by_strength(state, data, items: int, strengths: list[float]) -> dict[float, float]:
    import torch
    from torch.utils.data import default_collate

    from evedit.diffusion import ddim_sample, ddim_timesteps
    from evedit.models.guided import edit_teacher_guided
    from evedit.models.lora import lora_scaled
    from evedit.training.fdd.teachers import TeacherBank, encode_batch

    m, cfg = state.teacher, state.cfg
    bank, steps, out = TeacherBank(m, cfg), ddim_timesteps(3, m.schedule.num_train_timesteps), {}
    for b in range(items // 2):
        idx = [2 * b, 2 * b + 1]
        ab = bank.fill(encode_batch(m, default_collate([data[i] for i in idx])), idx, 0, False)
        cond, pnp, student = ab.student_cond(), m.denoiser("pnp"), m.denoiser("student")
        noise = torch.randn(ab.source.shape, generator=torch.Generator().manual_seed(b))
        target = ddim_sample(lambda x, t: edit_teacher_guided(pnp, x, t, cond, ab.null, cfg.edit_image_scale,
                                                              cfg.edit_text_scale), noise, steps, m.schedule)
        for s in strengths:
            with lora_scaled(m.motion_unet, s):
                x0 = ddim_sample(lambda x, t: student(x, t, cond), noise, steps, m.schedule)
            out.setdefault(s, []).append(float(((x0 - target) ** 2).mean()))
    return {s: sum(v) / len(v) for s, v in out.items()}


def main() -> None:
    import torch

    from evedit.training.fdd.config import FDDConfig
    from evedit.training.fdd.run import alignment_data, build_state
    from evedit.world import AlignmentDataset, WorldConfig

    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--model", required=True, help="A model folder with an alignment LoRA.")
    ap.add_argument("--store", required=True, help="The align store the LoRA was trained on.")
    ap.add_argument("--items", type=int, default=12, help="Items of each kind (even).")
    ap.add_argument("--strengths", default="0,0.25,1")
    args = ap.parse_args()
    torch.set_grad_enabled(False)
    cfg = FDDConfig(model=args.model, lora_init="continue", steps_adv=0, data={"kind": "store", "path": args.store})
    state = build_state(cfg)
    world = WorldConfig(**(state.teacher.spec.world or {}), frames=8)
    strengths = [float(s) for s in args.strengths.split(",")]
    for name, data in (("train", alignment_data(cfg, state.teacher)),
                       ("fresh", AlignmentDataset(split="val", length=args.items, config=world))):
        mse = mse_by_strength(state, data, args.items, strengths)
        print(f"{name}: " + ", ".join(f"strength {s:g}: {v:.4f}" for s, v in mse.items()))


if __name__ == "__main__":
    main()
