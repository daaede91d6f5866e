"""Probe (scratch): a ControlNet for the first frame beside the video adapter.

The shipped video adapter (models/shapeworld) plus a diffusers ControlNetModel copied from the frozen
backbone's encoder, fed the first-frame latent and mask in Emu Video's layout (frame 0 only), its
residuals added to the motion model's down and mid blocks at every resolution. Trained with the
temporal layers for MINUTES on the video store, then scored by the stage's own validation.
usage: python benchmarks/probes/first_frame/ff_controlnet.py MINUTES OUT [every]
"""
import sys, time, json
import torch
from diffusers import ControlNetModel
from einops import rearrange
from torch.utils.data import DataLoader
from evedit.training.stages.video_adapter import VideoAdapterStage, VideoAdapterConfig
from evedit.training.stages.common import load_unet, weighted_denoising_loss, psnr
from evedit.training.store import drop_states
from evedit.diffusion import cfg, ddim_sample, ddim_timesteps
from evedit.models.codec import decode_video, encode_video

minutes, out = float(sys.argv[1]), sys.argv[2]
EVERY = len(sys.argv) > 3 and sys.argv[3] == "every"
torch.manual_seed(0)
st = VideoAdapterStage(VideoAdapterConfig(vae_path="models/parts/codec-dc/vae", unet_path="models/parts/t2i-dc/unet",
                                          init_from="models/shapeworld", data={"kind": "store", "path": "stores/video-dc"}))
unet = load_unet("models/parts/t2i-dc/unet")
C = unet.config.in_channels
ctrl = ControlNetModel.from_unet(unet, conditioning_channels=C + 1, conditioning_embedding_out_channels=(32,))
ctrl.train()

def cond_map(first, frames, keep=None):
    b, c, h, w = first.shape
    m = first.new_zeros(b, c + 1, frames, h, w)
    if EVERY:
        m[:, :c] = first.unsqueeze(2)
    else:
        m[:, :c, 0] = first
    m[:, c, 0] = 1.0
    if keep is not None:
        m = m * keep.to(m).view(-1, 1, 1, 1, 1)
    return rearrange(m, "b c f h w -> (b f) c h w")

def forward(x_t, t, states, first, keep=None):
    b, c, f, h, w = x_t.shape
    text = states.repeat_interleave(f, 0)
    flat = rearrange(x_t, "b c f h w -> (b f) c h w")
    down, mid = ctrl(flat, t.repeat_interleave(f), text, controlnet_cond=cond_map(first, f, keep), return_dict=False)
    with st.hook.condition(first, f, keep):
        return st.model(x_t, t, text, down_block_additional_residuals=down, mid_block_additional_residual=mid).sample

params = [p for m in st.trainable_modules() for p in m.parameters()] + list(ctrl.parameters())
opt = torch.optim.AdamW(params, lr=2e-4, weight_decay=0.0)
data = st.dataset("train")
loader = DataLoader(data, batch_size=4, shuffle=True, num_workers=0, drop_last=True)
g = torch.Generator().manual_seed(0)
t0, step, losses = time.time(), 0, []
while time.time() - t0 < minutes * 60:
    for batch in loader:
        x0 = batch["clip"]; b = x0.shape[0]
        no_cap = torch.rand(b, generator=g) < 0.1
        states = drop_states(batch["caption_states"], no_cap, st.store.null_states)
        keep = (torch.rand(b, generator=g) < 0.9).float()
        noise = torch.randn(x0.shape, generator=g)
        t = torch.randint(0, 1000, (b,), generator=g)
        out_ = forward(st.schedule.add_noise(x0, noise, t), t, states, x0[:, :, 0], keep)
        loss = weighted_denoising_loss(st.schedule, out_, st.schedule.target(x0, noise, t), t, 0.0)
        opt.zero_grad(); loss.backward(); torch.nn.utils.clip_grad_norm_(params, 1.0); opt.step()
        step += 1; losses.append(loss.item())
        if step % 100 == 0:
            print(step, f"{sum(losses[-100:]) / 100:.4f}", f"{time.time() - t0:.0f}s", flush=True)
        if time.time() - t0 >= minutes * 60:
            break

@torch.no_grad()
def evaluate():
    st.model.eval(); ctrl.eval()
    batch = st._val_batch()
    x0 = encode_video(st.vae, batch["clip"]); first = x0[:, :, 0]
    c_states = st.text(list(batch["caption"])).hidden_states
    n_states = st.text([""] * x0.shape[0]).hidden_states
    fn = lambda x, t: cfg(forward(x, t.reshape(-1).expand(x.shape[0]), n_states, first),
                          forward(x, t.reshape(-1).expand(x.shape[0]), c_states, first), 2.0)
    z = ddim_sample(fn, torch.randn(x0.shape, generator=torch.Generator().manual_seed(0)), ddim_timesteps(20), st.schedule)
    fake, real = decode_video(st.vae, z).cpu(), batch["clip"]
    ch_f = (fake[:, :, 1:] - fake[:, :, :-1]).abs().mean(); ch_r = (real[:, :, 1:] - real[:, :, :-1]).abs().mean()
    return {"steps": step, "first_frame_psnr": float(psnr(fake[:, :, 0], real[:, :, 0]).mean()),
            "clip_psnr": float(psnr(fake.flatten(1, 2), real.flatten(1, 2)).mean()),
            "frame_change_ratio": float(ch_f / ch_r), "minutes": minutes, "final_loss": sum(losses[-100:]) / 100}

res = evaluate()
print(json.dumps(res))
json.dump(res, open(out, "w"))
