"""Scratch: do colour misses come from the found region missing the object?"""
import sys, time, numpy as np
sys.path.insert(0, "benchmarks")
from color_errors import read_colour
from evedit.eval.accuracy import item_example, COLORS, _target_region
from evedit.eval.editors import PipelineEditor
from evedit.eval.metrics import psnr
from evedit.eval.shapeworld import ShapeWorldBenchmark, model_world
model = "models/shapeworld"; n = int(sys.argv[1])
items = ShapeWorldBenchmark(n, ("val",), ("color",), config=model_world(model)).items(n)
for region in ("auto", "full"):
    ed = PipelineEditor("eve", model, region=region); t = time.time(); rows = []
    for it in items:
        out = ed(it.frames, it.instruction, "color", None, 0)
        ex = item_example(it.meta["seed"], "color", it.meta["config"])
        r = read_colour(ex, out)
        if r is None: continue
        asked = r[0]
        reg = _target_region(ex, np.arange(ex.config.frames))
        main = reg & np.all(ex.edited_clip == np.asarray(COLORS[asked], np.uint8), axis=-1)
        changed = np.any(out != it.frames, axis=-1)
        cov = changed[main].mean()
        rows.append((r[0] == r[1], cov, r[2], psnr(out, it.target), r[0], r[1]))
    ok = np.array([x[0] for x in rows]); cov = np.array([x[1] for x in rows])
    print(region, f"made {ok.mean():.2f} psnr {np.mean([x[3] for x in rows]):.2f} cov(made) {cov[ok].mean():.3f} cov(miss) {cov[~ok].mean():.3f} miss cov<0.9: {(cov[~ok]<0.9).sum()}/{(~ok).sum()}  {time.time()-t:.0f}s", flush=True)
    for x in rows:
        if not x[0]: print("   miss", x[4], "->", x[5], f"size {x[2]} cov {x[1]:.2f}")
