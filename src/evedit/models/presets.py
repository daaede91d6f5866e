"""Part configurations for the two scales.

``shapeworld``: tiny diffusers models sized so every part trains on 2 CPU cores (see
``shared/reference/dependency-probe.md``: a tiny UNet forward at batch 8 costs ~0.3 s at 32x32
latents, so ShapeWorld uses 16x16x4 latents and ~1-2M parameters per part).

``sd15``: where the real parts come from. Each entry is a local folder or a hub id; nothing is
downloaded at run time here (the user points ``--model`` at folders they have).
"""

from __future__ import annotations

from dataclasses import dataclass, field

# ShapeWorld frames are 64x64 RGB; the codec maps them to 16x16x4 latents (factor 4).
SHAPEWORLD_UNET = dict(
    sample_size=16,
    in_channels=4,
    out_channels=4,
    block_out_channels=(32, 64, 64),  # three levels: 16 -> 8 -> 4
    down_block_types=("DownBlock2D", "CrossAttnDownBlock2D", "CrossAttnDownBlock2D"),
    up_block_types=("CrossAttnUpBlock2D", "CrossAttnUpBlock2D", "UpBlock2D"),
    mid_block_type="UNetMidBlock2DCrossAttn",
    layers_per_block=1,  # must equal the motion adapter's motion_layers_per_block
    cross_attention_dim=384,  # all-MiniLM-L6-v2 hidden size
    attention_head_dim=8,
    norm_num_groups=8,
)

SHAPEWORLD_VAE = dict(
    in_channels=3,
    out_channels=3,
    latent_channels=4,
    block_out_channels=(32, 64, 64),  # three blocks: two downsamples, 64 -> 16
    down_block_types=("DownEncoderBlock2D",) * 3,
    up_block_types=("UpDecoderBlock2D",) * 3,
    layers_per_block=1,
    norm_num_groups=16,
    sample_size=64,
    scaling_factor=1.0,  # re-estimated from latent statistics when the codec is trained
)

# ShapeWorld's next codec (models/parts/codec-dc; 0.2.0 still ships the KL one): diffusers' AutoencoderDC (Sana's deep-compression autoencoder)
# at 64x64 <-> 16x16x16. Its space-to-channel shortcuts around every resolution change make the
# network learn a residual over a fixed pixel-unshuffle code, which trained 20.8 dB in 200 steps
# where the KL codec reached 16.2 (benchmarks/results/codec_design.md). No attention, one
# residual block per level: at 16x16 attention costs more than it returns here.
SHAPEWORLD_DC = dict(
    in_channels=3,
    latent_channels=16,
    attention_head_dim=8,
    encoder_block_types="ResBlock",
    decoder_block_types="ResBlock",
    encoder_block_out_channels=(32, 64, 128),  # three levels: two pixel-unshuffles, 64 -> 16
    decoder_block_out_channels=(32, 64, 128),
    encoder_layers_per_block=(1, 1, 1),
    decoder_layers_per_block=(1, 1, 1),
    encoder_qkv_multiscales=((), (), ()),
    decoder_qkv_multiscales=((), (), ()),
    decoder_norm_types="rms_norm",
    decoder_act_fns="silu",
    scaling_factor=1.0,  # re-estimated from latent statistics when the codec is trained
)

SHAPEWORLD_MOTION = dict(
    block_out_channels=(32, 64, 64),
    motion_layers_per_block=1,
    motion_num_attention_heads=4,
    motion_norm_num_groups=8,
    motion_max_seq_length=32,  # longest window the temporal attention's positions cover
    use_motion_mid_block=True,
)

# The ControlNet's condition is the codec latent of the input frame (the codec's channels at latent
# size; the stages set conditioning_channels from the backbone), so its condition embedding needs no
# downsampling: one conv block.
SHAPEWORLD_CONTROLNET = dict(conditioning_embedding_out_channels=(16,), conditioning_channels=4)


@dataclass
class SD15Sources:
    """Where the SD 1.5 family parts come from: local folders or hub ids (offline cache)."""

    base: str = "stable-diffusion-v1-5/stable-diffusion-v1-5"
    controlnet: str = "lllyasviel/control_v11e_sd15_ip2p"
    motion_adapter: str = "guoyww/animatediff-motion-adapter-v1-5-2"
    extra: dict = field(default_factory=dict)


PRESETS = ("shapeworld", "sd15")
MAX_LORA_SCALE = 4.0  # the largest ModelSpec.lora_scale / --lora-scale accepted
MAX_GUIDANCE = 100.0  # the largest ModelSpec.student_guidance / --guidance accepted
PROMPT_ROUTINGS = ("paper", "instruction", "empty")  # what the backbone's text is (ModelSpec.prompt_routing)


@dataclass
class ModelSpec:
    """How the parts are wired; saved in the model folder's manifest."""

    preset: str = "shapeworld"
    resolution: int = 64  # pixel size of a frame the model edits
    num_frames: int = 8  # window length the video adapter was trained on (EVE: 8)
    cond_space: str = "latent"  # "latent" (ShapeWorld ControlNet) or "pixel" (ip2p ControlNet v1.1)
    prompt_routing: str = "paper"  # "paper": backbone <- output caption, adapter <- instruction;
    # "instruction": both get the instruction (ip2p-style ControlNets); "empty": backbone <- "",
    # adapter <- instruction (the edit needs no caption; see PROMPT_ROUTINGS)
    tasks: tuple[str, ...] = ()  # task-label vocabulary of the edit adapter (empty: none)
    lora_rank: int = 8  # EVE gives none; 8 is ample for the tiny ShapeWorld backbone
    # Strength of the alignment LoRA when the student edits (0: the unaligned student, 1: as trained);
    # the default of `evedit edit --lora-scale`. EVE has no such knob; chosen per model on the
    # ShapeWorld val split (benchmarks/lora_scale.py), never on the benchmark's test/heldout clips.
    lora_scale: float = 1.0
    # The student's inference guidance (the default of `evedit edit --guidance` for EVE): ip2p dual
    # guidance with this text scale and the edit teacher's image scale 1.5, as plug-and-play is
    # guided; 1: unguided. The paper states no inference guidance; chosen per model on the val split
    # (benchmarks/results/guide_distill.md: 2.0 since 0.4.3, +0.31 dB over unguided). An alignment
    # with FDDConfig.student_guidance trains the LoRA for that student and records its scale here.
    student_guidance: float = 1.0
    # Tasks whose edits keep to the region the edit adapter finds by default (`evedit edit --region`;
    # evedit.editing.auto_region, not in the paper); (): whole frames for every task. Chosen per model
    # on the ShapeWorld val split (benchmarks/results/auto_region.md).
    region_tasks: tuple[str, ...] = ()
    # Share of every frame's starting noise drawn once for the whole clip (`evedit edit --noise-share`;
    # evedit.editing.editors.frame_noise, not in the paper): 0 each frame its own noise, 1 the same
    # for all. Chosen per model on the ShapeWorld val split (benchmarks/results/noise_share.md).
    noise_share: float = 0.0
    text_encoder: str = "minilm"  # "minilm" (bundled package) or "clip" (folder text_encoder/)
    # ShapeWorld settings the parts were trained on that differ from the preset world, as
    # WorldConfig fields (e.g. {"small_px": 20, "large_px": 24}); {}: the preset world. Evaluation,
    # the model report and alignment render this world (:meth:`world_config`).
    world: dict = field(default_factory=dict)

    def world_config(self, **settings):
        """The :class:`~evedit.world.WorldConfig` of the world the model was trained on, with
        ``settings`` (e.g. ``frames=8``) on top."""
        from ..world import WorldConfig

        return WorldConfig(**{**self.world, **settings})

    def to_dict(self) -> dict:
        from dataclasses import asdict

        data = asdict(self)
        data["tasks"] = list(self.tasks)
        data["region_tasks"] = list(self.region_tasks)
        return data

    @classmethod
    def from_dict(cls, data: dict) -> "ModelSpec":
        known = {k: v for k, v in data.items() if k in cls.__dataclass_fields__}
        known["tasks"] = tuple(known.get("tasks", ()))
        known["region_tasks"] = tuple(known.get("region_tasks", ()))
        known["world"] = dict(known.get("world") or {})
        return cls(**known)
