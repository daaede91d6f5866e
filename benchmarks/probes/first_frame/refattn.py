"""Probe: reference attention ("reference-only"): the motion model's spatial self-attention also reads
the keys/values of the first-frame edit, passed through the same model (noised to the step's t, empty text).
usage: python benchmarks/probes/first_frame/refattn.py {color|val} [args of the benchmark script...]"""
import sys, runpy
import torch
from diffusers.models.attention_processor import AttnProcessor2_0
import evedit.editing.editors as E

class Ref:
    def __init__(self):
        self.base, self.mode, self.store = AttnProcessor2_0(), None, None
    def __call__(self, attn, hidden_states, encoder_hidden_states=None, attention_mask=None, temb=None, **kw):
        if self.mode == "write":
            self.store = hidden_states
        elif self.mode == "read":
            ref = self.store.expand(hidden_states.shape[0], -1, -1)
            encoder_hidden_states = torch.cat([hidden_states, ref], dim=1)
        return self.base(attn, hidden_states, encoder_hidden_states=encoder_hidden_states,
                         attention_mask=attention_mask, temb=temb)

PROCS = []
def install(unet):
    if PROCS: return
    procs = unet.attn_processors
    for name in procs:
        if "motion_modules" not in name and name.endswith("attn1.processor"):
            procs[name] = Ref(); PROCS.append(procs[name])
    unet.set_attn_processor(procs)

def set_mode(m):
    for p in PROCS: p.mode = m

def eve(model, w, steps, guidance, progress=None):
    install(model.motion_unet)
    student = model.denoiser("student")
    ref0 = w.cond.first_frame[:, :, None]  # (1, C, 1, h, w)
    def fn(x, t):
        set_mode("write")
        with torch.no_grad():
            xr = model.schedule.add_noise(ref0, w.noise[:, :, :1], t)
            model.motion_unet(xr, t.reshape(-1)[:1], w.null)
        set_mode("read")
        out = E.edit_teacher_guided(student, x, t, w.cond, w.null, E.IMAGE_GUIDANCE, guidance)
        set_mode(None)
        return out
    return E._sample(model, fn, w, E.ddim_timesteps(steps, model.schedule.num_train_timesteps), progress)

E.EDITOR_FUNCTIONS["eve"] = E.EditorInfo(eve, True)
script = {"color": "benchmarks/color_errors.py", "val": "benchmarks/lora_scale.py"}[sys.argv[1]]
sys.argv = [script] + sys.argv[2:]
runpy.run_path(script, run_name="__main__")
