"""Stage ``edit-adapter``: train the ControlNet (and its task embedding) on a frozen backbone.

Data: (input image, instruction, task, output image) triples, from ShapeWorld's
``EditTripletDataset`` or an InstructPix2Pix-layout file. The backbone gets the output caption
(EVE's routing, ``prompt_routing="paper"``), the instruction (``"instruction"``) or the empty text
(``"empty"``: the ControlNet alone carries the edit, so the instruction is all a user needs to give;
benchmarks/results/caption_choice.md); the ControlNet gets the instruction, the codec latent of the
input image and the task label.

Condition dropout follows InstructPix2Pix (Brooks et al. 2023, section 3.4): 5% of items lose the
text (caption and instruction become ""), 5% the image (an all-zero condition), 5% both, so the
teacher supports classifier-free and image guidance at inference.

With ``data: {kind: store, path: ...}`` the train items come encoded from an ``edit`` store
(``evedit data build edit``): latents and text states are read, not computed, in the step.

What a rare, small edit gets of the objective (evedit's choices, measured in
benchmarks/results/proxy_edit_adapter_*.md): ``edit_weight`` stresses the latent positions the edit
changes (``edit_weight_tasks``: only on the named tasks' items; a background edit changes every
position but the objects, which the weight would then teach the adapter to neglect), and
``task_weights`` draws some tasks' items more often (store data). On the natural mix a
colour edit is one item in 14 and a few latent positions of 256, and the adapter learned to keep
every object's input colour. ``pooled_instruction`` and ``text_every_level`` widen the instruction's
path into the ControlNet; ``cond_channels`` widens the input frame's (wider_condition);
``attention_layers`` deepens its attention (deeper_attention).
``source_branch`` adds the input frame's latent to the backbone's own first
features (:class:`~evedit.models.edit_adapter.SourceBranch`), beside the ControlNet.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import torch
from diffusers import ControlNetModel
from torch import nn

from ...diffusion import NoiseSchedule, ddim_sample, ddim_timesteps, dual_guidance
from ...errors import EveditError
from ...io import write_image
from ...losses import denoising_loss, edit_region_weights
from ...models.codec import decode_images, encode_images
from ...models.compose import image_edit_forward
from ...models.edit_adapter import (
    EditAdapter, SourceBranch, controlnet_from_unet, deeper_attention, instruction_in_time_embedding,
    text_at_every_level, wider_condition,
)
from ...models.presets import PROMPT_ROUTINGS, SHAPEWORLD_CONTROLNET
from ..fdd.config import FDDConfig
from ..data import WeightedStepSampler
from ..store import drop_states, open_store, store_world
from .common import (
    biased_timesteps, check_timestep_bias, drop_texts, grid, load_trainable, load_unet, load_vae, psnr,
    text_encoder, to_uint8, weighted_denoising_loss,
)


@dataclass
class EditAdapterConfig:
    vae_path: str = "runs/codec/export/vae"  # the trained codec (frozen here)
    unet_path: str = "runs/t2i/export/unet"  # the trained backbone (frozen here)
    data: dict = field(default_factory=lambda: {"kind": "shapeworld"})  # or {"kind": "file", "path": ...}
    prompt_routing: str = "paper"  # backbone <- output caption; "instruction": <- instruction; "empty": <- ""
    drop_text: float = 0.05  # ip2p condition dropout rates
    drop_image: float = 0.05
    drop_both: float = 0.05
    eval_items: int = 16  # validation images edited per evaluation
    eval_steps: int = 20  # DDIM steps for evaluation edits (the quality report uses 50)
    image_scale: float = FDDConfig.edit_image_scale  # ip2p guidance at evaluation: the teacher's own
    text_scale: float = FDDConfig.edit_text_scale  # (text 3.0 in earlier builds)
    train_length: int = 100_000
    seed: int = 0
    init_from: str | None = None  # a trained ControlNet folder to continue from; None: from the backbone
    snr_gamma: float = 0.0  # min-SNR-gamma loss weighting (Hang et al. 2023); 0: unweighted MSE
    edit_weight: float = 0.0  # extra loss weight where the edit changes the latent (edit_region_weights); 0: off
    edit_weight_min_t: int = 0  # the edit weight only for items noised to t >= this (where an edit is decided)
    edit_weight_renorm: bool = True  # the weights' mean 1 per item (False: unchanged positions keep weight 1)
    edit_weight_tasks: list = field(default_factory=list)  # tasks whose items take the edit weight; []: every task
    text_every_level: bool = False  # cross-attention to the instruction at every level (text_at_every_level)
    pooled_instruction: bool = False  # the pooled instruction in the timestep embedding (instruction_in_time_embedding)
    task_weights: dict = field(default_factory=dict)  # task -> how often its items are drawn (others 1); store data
    timestep_bias: dict = field(default_factory=dict)  # {strategy: later|earlier, multiplier, portion} (biased_timesteps)
    source_branch: bool = False  # train a SourceBranch too (continued from init_from's sibling source_branch/)
    cond_channels: int = 0  # features of the condition embedding (wider_condition); 0: the preset's (16) or init_from's
    attention_layers: int = 0  # transformer blocks per attention layer (deeper_attention); 0: the preset's or init_from's


class EditAdapterStage:
    name = "edit-adapter"

    def __init__(self, config: EditAdapterConfig):
        from ...world import TASKS

        if config.prompt_routing not in PROMPT_ROUTINGS:
            raise EveditError(f"prompt_routing must be one of {', '.join(PROMPT_ROUTINGS)}; "
                              f"got {config.prompt_routing!r}.")
        if config.edit_weight > 0 and config.snr_gamma > 0:
            raise EveditError("Use edit_weight or snr_gamma, not both: the loss takes one weighting.")
        if config.edit_weight <= 0 and (config.edit_weight_min_t > 0 or not config.edit_weight_renorm
                                        or config.edit_weight_tasks):
            raise EveditError("edit_weight_min_t, edit_weight_renorm and edit_weight_tasks shape the edit-region "
                              "weight; set edit_weight above 0 to use them.")
        self.config, self.tasks = config, tuple(TASKS)
        if set(config.edit_weight_tasks) - set(self.tasks):
            raise EveditError(f"edit_weight_tasks takes ShapeWorld task names ({', '.join(self.tasks)}); "
                              f"got {list(config.edit_weight_tasks)}.")
        if set(config.task_weights) - set(self.tasks) or any(float(w) <= 0 for w in config.task_weights.values()):
            raise EveditError(f"task_weights takes ShapeWorld task names ({', '.join(self.tasks)}) with weights "
                              f"above 0; got {dict(config.task_weights)}.")
        if set(config.timestep_bias) - {"strategy", "multiplier", "portion"}:
            raise EveditError("timestep_bias takes strategy, multiplier and portion; "
                              f"got {', '.join(sorted(config.timestep_bias))}.")
        check_timestep_bias(**config.timestep_bias)
        self.vae, self.unet = load_vae(config.vae_path), load_unet(config.unet_path)
        controlnet = self._init_controlnet(config.init_from)
        if config.text_every_level:
            controlnet = text_at_every_level(controlnet)
        if config.pooled_instruction:
            controlnet = instruction_in_time_embedding(controlnet)
        if config.cond_channels:
            try:
                controlnet = wider_condition(controlnet, config.cond_channels)
            except ValueError as e:
                raise EveditError(f"cond_channels: {e}.") from None
        if config.attention_layers:
            try:
                controlnet = deeper_attention(controlnet, config.attention_layers)
            except ValueError as e:
                raise EveditError(f"attention_layers: {e}.") from None
        self.adapter = EditAdapter(controlnet, cond_space="latent", source_branch=self._init_branch())
        self.text = text_encoder()
        self.schedule = NoiseSchedule()

    def _init_controlnet(self, init_from: str | None) -> ControlNetModel:
        """A fresh ControlNet copied from the backbone, or (``init_from``) a trained one, in fp32.

        Continuing from a trained adapter is how a run whose checkpoints are gone goes on: the
        weights are kept, the optimiser moments and the EMA start afresh (the learning rate is a
        function of the step, so a recipe's ``lr_milestones`` say the rest of the schedule).
        """
        if not init_from:
            cond = {**SHAPEWORLD_CONTROLNET, "conditioning_channels": self.unet.config.in_channels}
            return controlnet_from_unet(self.unet, len(self.tasks), **cond)
        net = load_trainable(ControlNetModel, init_from, "ControlNet")
        if net.config.num_class_embeds != len(self.tasks):
            raise EveditError(f"init_from {init_from!r} has {net.config.num_class_embeds} task labels, "
                              f"ShapeWorld has {len(self.tasks)}.")
        return net

    def _init_branch(self) -> SourceBranch | None:
        """The source branch: None when off; continued from ``init_from``'s sibling ``source_branch``
        folder (an export or a model folder) when there is one; else fresh (zero-initialised)."""
        c = self.config
        sibling = Path(c.init_from).parent / "source_branch" if c.init_from else None
        has = sibling is not None and (sibling / "config.json").is_file()
        if has and not c.source_branch:
            raise EveditError(f"init_from {c.init_from!r} comes with a source branch ({sibling}); set "
                              "source_branch: true to continue it.")
        if not c.source_branch:
            return None
        if has:
            return load_trainable(SourceBranch, str(sibling), "source branch")
        return SourceBranch(latent_channels=self.unet.config.in_channels,
                            out_channels=self.unet.config.block_out_channels[0])

    @classmethod
    def from_config(cls, data: dict) -> "EditAdapterStage":
        from ..config import structured

        return cls(structured(EditAdapterConfig, data, "stage section for 'edit-adapter'"))

    def trainable_modules(self) -> list[nn.Module]:
        branch = self.adapter.source_branch
        return [self.adapter.controlnet] + ([branch] if branch is not None else [])

    def modules(self) -> dict[str, nn.Module]:
        mods = {"vae": self.vae, "unet": self.unet, "controlnet": self.adapter.controlnet, "text": self.text}
        if self.adapter.source_branch is not None:
            mods["source_branch"] = self.adapter.source_branch
        return mods

    def dataset(self, split: str):
        from ...world import EditTripletDataset, WorldConfig

        kind = self.config.data.get("kind", "shapeworld")
        self.world_settings = store_world(self.config.data)  # validation renders the store's world
        if kind == "store" and split == "train":
            self.store = open_store(self.config.data, self.name, self.vae, self.text)
            return self.store
        if kind == "file":
            from ..edit_data import EditTripletFile

            return EditTripletFile(self.config.data["path"], size=64, tasks=self.tasks)
        length = self.config.train_length if split == "train" else max(self.config.eval_items, 64)
        return EditTripletDataset(split=split, length=length, config=WorldConfig(**self.world_settings))

    def batch_sampler(self, step: int, rank: int, world: int, accum: int, batch: int):
        """Items drawn by ``task_weights`` (None, the loop's default stream, when there are none).

        A rare task's gradient is small beside the rest of the data's: a colour edit changes a few
        latent positions of one item in 14, and 0.2.0's adapter learned to keep every object's
        input colour (benchmarks/results/proxy_edit_adapter_instruction.md). Weighting the local
        tasks' items is evedit's choice; the paper's adapter trains on Emu Edit's own task mix.
        """
        weights = self.config.task_weights
        if not weights:
            return None
        if not hasattr(self, "store"):
            raise EveditError("task_weights needs the edit adapter's data from a store (data: {kind: store, ...}).")
        per_task = torch.tensor([float(weights.get(t, 1.0)) for t in self.tasks])
        return WeightedStepSampler(per_task[self.store.column("task")], self.config.seed, step, rank, world,
                                   accum, batch)

    # ---- loss -------------------------------------------------------------------------------
    def _encode(self, images: torch.Tensor) -> torch.Tensor:
        return encode_images(self.vae, images)

    def _prompts(self, batch: dict, no_text: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        instructions = drop_texts(list(batch["instruction"]), no_text)
        routing = self.config.prompt_routing
        if routing == "empty":
            captions = [""] * len(instructions)
        else:
            key = "output_caption" if routing == "paper" else "instruction"
            captions = drop_texts(list(batch[key]), no_text)
        return self.text(captions).hidden_states, self.text(instructions).hidden_states

    def _dropout_masks(self, n: int, generator) -> tuple[torch.Tensor, torch.Tensor]:
        c = self.config
        u = torch.rand(n, generator=generator)
        no_text = (u < c.drop_text) | (u >= 1 - c.drop_both)
        no_image = ((u >= c.drop_text) & (u < c.drop_text + c.drop_image)) | (u >= 1 - c.drop_both)
        return no_text, no_image

    def _stored_prompts(self, batch: dict, no_text: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """:meth:`_prompts` for a store's items: their text states, dropped to the null text."""
        null, routing = self.store.null_states, self.config.prompt_routing
        if routing == "empty":
            everything = torch.ones_like(no_text)
            return (drop_states(batch["caption_states"], everything, null),
                    drop_states(batch["instruction_states"], no_text, null))
        key = "caption" if routing == "paper" else "instruction"
        return (drop_states(batch[f"{key}_states"], no_text, null),
                drop_states(batch["instruction_states"], no_text, null))

    def _region_weights(self, source: torch.Tensor, x0: torch.Tensor, task: torch.Tensor) -> torch.Tensor | None:
        """The edit-region weights (B, 1, h, w), uniform for items of tasks outside ``edit_weight_tasks``.

        A background edit changes every position but the objects, so the weight would make the
        objects it must keep weigh about 9x less than the background it draws; trained that way, the
        adapter paints the new background over them (benchmarks/results/proxy_edit_adapter_background_weight.md).
        """
        c = self.config
        if c.edit_weight <= 0:
            return None
        weights = edit_region_weights(source, x0, c.edit_weight, c.edit_weight_renorm)
        if not c.edit_weight_tasks:
            return weights
        named = torch.tensor([self.tasks[int(i)] in c.edit_weight_tasks for i in task], device=weights.device)
        return torch.where(named.view(-1, 1, 1, 1), weights, torch.ones_like(weights))

    def loss(self, batch: dict, generator: torch.Generator | None = None) -> dict[str, torch.Tensor]:
        device = self.unet.device
        stored = "target" in batch  # an encoded store's item
        if stored:
            x0, source = batch["target"], batch["source"]
        else:
            with torch.no_grad():
                x0 = self._encode(batch["output_image"].to(device))
                source = self._encode(batch["input_image"].to(device))
        n = x0.shape[0]
        no_text, no_image = self._dropout_masks(n, generator)
        region = self._region_weights(source, x0, batch["task"])
        source = source * (~no_image).to(source).view(-1, 1, 1, 1)
        caption, instruction = (self._stored_prompts if stored else self._prompts)(batch, no_text)
        noise = torch.randn(x0.shape, generator=generator).to(device)
        t = biased_timesteps(n, self.schedule.num_train_timesteps, generator, **self.config.timestep_bias).to(device)
        if region is not None and self.config.edit_weight_min_t > 0:
            low = (t < self.config.edit_weight_min_t).view(-1, 1, 1, 1)
            region = torch.where(low, torch.ones_like(region), region)
        x_t = self.schedule.add_noise(x0, noise, t)
        out = image_edit_forward(self.unet, self.adapter, x_t, t, caption, instruction, source,
                                 batch["task"].to(device))
        target = self.schedule.target(x0, noise, t)
        if region is not None:
            loss = denoising_loss(out, target, region)
        else:
            loss = weighted_denoising_loss(self.schedule, out, target, t, self.config.snr_gamma)
        return {"loss": loss, "mse": denoising_loss(out.detach(), target)}

    # ---- evaluation -------------------------------------------------------------------------
    @torch.no_grad()
    def edit_images(self, batch: dict, steps: int, seed: int = 0) -> torch.Tensor:
        """Edit ``batch["input_image"]`` with ip2p dual guidance and DDIM; returns pixels."""
        device = self.unet.device
        source = self._encode(batch["input_image"].to(device))
        n = source.shape[0]
        caption, instruction = self._prompts(batch, torch.zeros(n, dtype=torch.bool))
        null = self.text([""] * n).hidden_states
        task = batch["task"].to(device)
        c = self.config

        def model_fn(x, t):
            xs, ts = torch.cat([x] * 3), torch.cat([t] * 3)
            out = image_edit_forward(
                self.unet, self.adapter, xs, ts, torch.cat([caption, null, null]),
                torch.cat([instruction, null, null]),
                torch.cat([source, source, torch.zeros_like(source)]), torch.cat([task] * 3),
            )
            full, image_only, uncond = out.chunk(3)
            return dual_guidance(uncond, image_only, full, c.image_scale, c.text_scale)

        g = torch.Generator().manual_seed(seed)
        x_T = torch.randn(source.shape, generator=g).to(device)
        z = ddim_sample(model_fn, x_T, ddim_timesteps(steps), self.schedule)
        return decode_images(self.vae, z)

    def _val_batch(self) -> dict:
        data = self.dataset("val")
        items = [data[i] for i in range(self.config.eval_items)]
        return torch.utils.data.default_collate(items)

    @torch.no_grad()
    def evaluate(self, batches: int = 1, steps: int | None = None) -> dict[str, float]:
        batch = self._val_batch()
        edited = self.edit_images(batch, steps or self.config.eval_steps)
        value = psnr(edited, batch["output_image"].to(edited.device))
        return {"edit_psnr": float(value.mean())}

    @torch.no_grad()
    def sample(self, out_dir: Path, step: int) -> list[Path]:
        batch = self._val_batch()
        edited = self.edit_images(batch, self.config.eval_steps)
        rows = [[to_uint8(batch["input_image"][i]), to_uint8(edited[i]), to_uint8(batch["output_image"][i])]
                for i in range(min(8, edited.shape[0]))]
        out_dir.mkdir(parents=True, exist_ok=True)
        path = out_dir / f"edit_{step:06d}.png"
        write_image(path, grid(rows))
        (out_dir / f"edit_{step:06d}.txt").write_text(
            "columns: input | edited | ground truth\n" + "\n".join(batch["instruction"][:8]) + "\n")
        return [path]

    def export(self, folder: Path) -> None:
        self.adapter.controlnet.save_pretrained(Path(folder) / "controlnet", safe_serialization=True)
        if self.adapter.source_branch is not None:
            self.adapter.source_branch.save_pretrained(Path(folder) / "source_branch", safe_serialization=True)
