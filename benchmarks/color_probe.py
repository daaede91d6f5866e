"""Does the edit teacher make one task's edit, and from which noise level does its instruction decide it?

For a ShapeWorld model folder and one task (default ``color``), on test-split frames, from the
instruction alone (the backbone's text empty):

- **guided edit**: the edit teacher with its ip2p dual guidance
  (``evedit.training.quality.guided_edits``), DDIM 25 from noise; PSNR against the exact edit and
  edit accuracy (``evedit.eval.accuracy``);
- **x0 probe**: the latent of the exact *edited* frame noised to step t, the teacher's unguided x0
  estimate from it decoded and scored by the accuracy rule, with the instruction and with it nulled.
  An adapter that restores the input's colour even at t = 500 (x_t already shows the asked colour)
  has learned to ignore the edit.

Usage: ``python benchmarks/color_probe.py --model models/shapeworld [--task color] [--frames 16]``
"""

from __future__ import annotations

import argparse

import torch

from evedit.models import Conditioning, load_model
from evedit.models.codec import decode_video, encode_video
from evedit.training.quality import guided_edits, mean_accuracy
from evedit.training.stages.common import psnr
from evedit.world import EditTripletDataset

PROBE_STEPS = (999, 900, 700, 500, 300)


@torch.no_grad()
def run(model_path: str, task: str, n: int) -> None:
    m = load_model(model_path)
    data = EditTripletDataset("test", n, tasks=(task,))
    b = torch.utils.data.default_collate([data[i] for i in range(n)])
    out = guided_edits(m, b, None, 25, 0)
    print(f"{model_path} {task}: guided edit {float(psnr(out, b['output_image']).mean()):.2f} dB, "
          f"accuracy {mean_accuracy(data, 0, out):.0%}", flush=True)
    teacher, null = m.denoiser("edit"), m.text_encoder([""]).hidden_states
    src = encode_video(m.vae, b["input_image"][:, :, None])
    truth = encode_video(m.vae, b["output_image"][:, :, None])
    instruction = m.text_encoder(list(b["instruction"])).hidden_states
    cond = Conditioning(caption=null.expand_as(instruction), instruction=instruction, source=src, task=b["task"])
    for label, states in (("with the instruction", instruction), ("instruction nulled", null.expand_as(instruction))):
        row = []
        for step in PROBE_STEPS:
            t = torch.full((n,), step)
            x_t = m.schedule.add_noise(truth, torch.randn(truth.shape, generator=torch.Generator().manual_seed(step)), t)
            x0, _ = m.schedule.split(teacher(x_t, t, cond.replace(instruction=states)), x_t, t)
            row.append(f"t={step} {mean_accuracy(data, 0, decode_video(m.vae, x0)[:, :, 0]):.0%}")
        print(f"  x0 probe, {label}: " + ", ".join(row), flush=True)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--model", default="models/shapeworld")
    p.add_argument("--task", default="color")
    p.add_argument("--frames", type=int, default=16)
    a = p.parse_args()
    run(a.model, a.task, a.frames)


if __name__ == "__main__":
    main()
