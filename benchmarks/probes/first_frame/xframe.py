"""Probe: cross-frame self-attention in the motion model's spatial layers (Text2Video-Zero / Tune-A-Video):
every frame's spatial self-attention reads keys/values of frame 0 ('first') or of itself and frame 0 ('both').
usage: python benchmarks/probes/first_frame/xframe.py MODE {color|val} [args of the benchmark script...]"""
import sys, runpy
import torch
from diffusers.models.attention_processor import AttnProcessor2_0
import evedit.editing.pipeline as P

MODE, F = sys.argv[1], 8

class FrameZero:
    def __init__(self):
        self.base = AttnProcessor2_0()
    def __call__(self, attn, hidden_states, encoder_hidden_states=None, attention_mask=None, temb=None, **kw):
        n, l, d = hidden_states.shape
        assert n % F == 0, n
        ref = hidden_states.view(n // F, F, l, d)[:, :1].expand(n // F, F, l, d).reshape(n, l, d)
        kv = ref if MODE == "first" else torch.cat([hidden_states, ref], dim=1)
        return self.base(attn, hidden_states, encoder_hidden_states=kv, attention_mask=attention_mask, temb=temb)

orig = P.EditPipeline.__init__
def init(self, model, device="auto"):
    orig(self, model, device)
    unet = self.model.motion_unet
    procs = unet.attn_processors
    n = 0
    for name in procs:
        if "motion_modules" not in name and name.endswith("attn1.processor"):
            procs[name] = FrameZero(); n += 1
    unet.set_attn_processor(procs)
    print("cross-frame processors:", n, file=sys.stderr)
P.EditPipeline.__init__ = init
script = {"color": "benchmarks/color_errors.py", "val": "benchmarks/lora_scale.py"}[sys.argv[2]]
sys.argv = [script] + sys.argv[3:]
runpy.run_path(script, run_name="__main__")
