"""Probe: EVE with frame 0 pinned to the edit teacher's first-frame edit (replacement conditioning).
usage: python benchmarks/probes/first_frame/pin0.py {color|val} [args of the benchmark script...]"""
import sys, runpy, dataclasses
import evedit.editing.editors as E

orig = E.eve
def eve(model, w, steps, guidance, progress=None):
    if w.known is None and w.cond.first_frame is not None:
        w = dataclasses.replace(w, known=w.cond.first_frame[:, :, None])
    return orig(model, w, steps, guidance, progress)

E.EDITOR_FUNCTIONS["eve"] = E.EditorInfo(eve, True)
MODE = sys.argv[1]
script = {"color": "benchmarks/color_errors.py", "val": "benchmarks/lora_scale.py"}[MODE]
sys.argv = [script] + sys.argv[2:]
runpy.run_path(script, run_name="__main__")
