"""Stage ``clip``: train ShapeCLIP (image and video towers) against frozen MiniLM sentence embeddings.

Batches are groups (:class:`ShapeCLIPDataset`): a scene and ``hard_negatives`` *siblings*, copies
with one attribute changed (one object's colour, shape, texture or size, or the background; see
:mod:`evedit.eval.captions`), each rendered and captioned in the same phrasing. Loss: symmetric
InfoNCE over every (frame, caption) pair of the batch, so each image meets its siblings'
captions and each caption its siblings' images as hard negatives (other scenes differ in many
words: alone they teach only the gist, not "small red circle" vs "large red circle"); plus,
weighted by ``video_weight``, InfoNCE of the first ``video_batch`` scenes' clips (video tower)
against their captions, with the siblings' captions as hard negatives.

Scenes are the input or the edited one of ShapeWorld examples (so the model also scores edit
results: grayscale views, masks, edge maps), any frame. A scene's captions are fixed (phrasing
seeded by the scene's seed), so the frozen encoder's embeddings are computed once and cached
across epochs (:class:`PooledTextCache`): MiniLM costs ~10 ms a caption on 2 cores, more than a
frame's forward and backward through the image tower.

Evaluation: zero-shot retrieval of the true caption among 10 (itself and 9 one-attribute-off
captions, same phrasing) for validation frames (image tower) and clips (video tower), chance 10%;
also the reverse (the true frame among its 10 siblings' frames for the caption).

Construction: ``ClipStage(ClipStageConfig(...))``, or ``ClipStage.from_config(dict)`` (the
recipe's ``stage:`` section; unknown keys and wrong types are one-sentence errors).
"""

from __future__ import annotations

from collections import OrderedDict
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from torch import nn
from torch.utils.data import Dataset, default_collate

from ...errors import EveditError
from ...eval.captions import iter_one_attribute_off
from ...io import write_image
from ...models.shapeclip import ShapeCLIP, clip_loss
from ...world import SPLITS, WorldConfig, caption, make_example, render_frame
from .common import grid, load_trainable, text_encoder, to_uint8

@dataclass
class ClipStageConfig:
    channels: list[int] = field(default_factory=lambda: [32, 48, 96, 160])  # ~1M params; 256 wide is 3x slower on CPU
    embed_dim: int = 384  # joint space; MiniLM's own width
    text_hidden: int = 0  # 0: linear text projection; >0: an MLP with this hidden width
    stem: int = 0  # >0: a full-resolution conv block of this width before the stride-2 blocks
    train_scenes: int = 2_500  # distinct train seeds; few enough that their captions get cached
    hard_negatives: int = 7  # rendered one-attribute-off siblings per training scene (group = 1 + this)
    video_batch: int = 4  # scenes of each batch also seen as clips (a clip costs F frames)
    video_weight: float = 0.5  # weight of the video InfoNCE in "loss"
    eval_items: int = 256  # validation scenes retrieved per evaluation (at most batches * 64)
    eval_negatives: int = 9  # one-attribute-off captions per evaluated scene (10 candidates)
    sample_images: int = 8  # images in a sample grid
    text_max_length: int = 48  # tokens; ShapeWorld captions reach 39 (MiniLM's default cut is 32)
    text_cache_size: int = 200_000  # cached caption embeddings (1.5 kB each)
    text_cache_file: str | None = None  # safetensors of cached embeddings to start from (repeated runs)
    whiten_items: int = 200  # train scenes whose captions (both views, all siblings) fit the whitening
    whiten_eps: float = 0.1  # whitening ridge, relative to the mean eigenvalue (0.01 overfits, 1 underfits)
    init_from: str | None = None  # a ShapeCLIP folder to start from (fine-tuning); None: scratch
    world: dict = field(default_factory=dict)  # ShapeWorld settings (e.g. {small_px: 20}); {}: the preset


class PooledTextCache:
    """Frozen MiniLM pooled embeddings ``(N, 384)`` of strings, cached (LRU) on the CPU.

    Batches are padded to their longest text (not to a fixed length: the pooled mean is masked,
    so padding changes nothing but the cost) and sorted by length to pad little.
    """

    def __init__(self, encoder, max_length: int = 48, max_items: int = 200_000, chunk: int = 128):
        self.encoder, self.max_length, self.max_items, self.chunk = encoder, max_length, max_items, chunk
        self._store: OrderedDict[str, torch.Tensor] = OrderedDict()

    def __len__(self) -> int:
        return len(self._store)

    def save(self, path: str | Path) -> None:
        """Write the cache to a safetensors file (texts in its metadata)."""
        import json

        from safetensors.torch import save_file

        texts = list(self._store)
        emb = torch.stack([self._store[t] for t in texts]) if texts else torch.zeros(0, 384)
        save_file({"pooled": emb.contiguous()}, str(path), metadata={"texts": json.dumps(texts)})

    def load(self, path: str | Path) -> None:
        """Add the entries of a file written by :meth:`save` (embeddings of the same encoder)."""
        import json

        from safetensors import safe_open

        with safe_open(str(path), "pt") as f:
            texts = json.loads(f.metadata()["texts"])
            emb = f.get_tensor("pooled")
        for t, e in zip(texts, emb):
            self._store[t] = e

    @torch.no_grad()
    def _encode(self, texts: list[str]) -> torch.Tensor:
        enc = self.encoder
        tokens = enc.tokenizer(texts, padding=True, truncation=True, max_length=self.max_length,
                               return_tensors="pt").to(enc.device)
        out = enc.model(input_ids=tokens["input_ids"], attention_mask=tokens["attention_mask"])
        return enc.pool(out, tokens["attention_mask"]).float().cpu()  # (n, 384)

    def __call__(self, texts: list[str]) -> torch.Tensor:
        missing = sorted({t for t in texts if t not in self._store}, key=len)
        for i in range(0, len(missing), self.chunk):
            part = missing[i:i + self.chunk]
            for text, emb in zip(part, self._encode(part)):
                self._store[text] = emb
        out = torch.stack([self._store[t] for t in texts]) if texts else torch.zeros(0, 384)
        for t in texts:
            self._store.move_to_end(t)
        while len(self._store) > self.max_items:
            self._store.popitem(last=False)
        return out


def _pixels(array: np.ndarray) -> torch.Tensor:
    """uint8 ``(..., H, W, 3)`` -> float32 ``(3, ..., H, W)`` in [-1, 1], converted in numpy.

    (The same as the world's ``clip_tensor``/``image_tensor``; numpy is ~10x faster than torch's
    element-wise ops on a permuted view when the two cores are contended.)
    """
    moved = np.moveaxis(array, -1, 0).astype(np.float32)  # (3, ..., H, W), a contiguous copy
    return torch.from_numpy(moved / np.float32(127.5) - np.float32(1.0))


class ShapeCLIPDataset(Dataset):
    """Groups of a scene and its one-attribute-off siblings, each rendered and captioned.

    Item: ``"clip"`` (3, F, H, W) the scene's clip; ``"images"`` (G, 3, H, W) one frame of the
    scene, then of each sibling; ``"captions"`` (G strings), ``"attributes"`` (what each sibling
    changed; "" for the scene itself), ``"valid"`` (G,) bool, False (and "" / zeros) where the
    scene offers fewer siblings. ``G = 1 + negatives``. A sibling whose frame renders exactly
    like the scene's (the change is occluded, or invisible in the render mode: an outline has
    no colour) is skipped, so every pair is a true negative in both directions.

    ``split="train"``: item ``i`` is scene ``i % scenes``, its input (even ``i // scenes``) or
    edited (odd) rendering, frame ``(i // scenes // 2) % F``; other splits: item ``i`` is the
    input scene (normal rendering) of seed ``i`` of that split, frame ``seed % F``.
    """

    def __init__(self, split: str, scenes: int, negatives: int, world: WorldConfig | None = None):
        if split not in SPLITS:
            raise EveditError(f"Unknown ShapeWorld split {split!r}; splits are {', '.join(SPLITS)}.")
        self.split, self.scenes, self.negatives = split, int(scenes), int(negatives)
        self.world = world or WorldConfig()
        self.views = 2 * self.world.frames if split == "train" else 1

    def __len__(self) -> int:
        return self.scenes * self.views

    def __getitem__(self, index: int) -> dict:
        if not 0 <= index < len(self):
            raise IndexError(f"index {index} out of range for {len(self)} items")
        s, r = index % self.scenes, index // self.scenes
        seed = SPLITS[self.split][0] + s
        ex = make_example(seed, None, self.world)
        edited = r % 2 == 1
        scene, clip = (ex.edit.edited_scene, ex.edited_clip) if edited else (ex.scene, ex.clip)
        frame = (r // 2) % self.world.frames if self.split == "train" else seed % self.world.frames
        captions, attributes = [caption(scene, np.random.default_rng(seed))], [""]
        frames = [clip[frame]]
        for text, p in iter_one_attribute_off(scene, np.random.default_rng([seed, int(edited), 5]), seed):
            if len(frames) > self.negatives:
                break
            pixels = render_frame(p.scene, frame, self.world.size)
            if not np.array_equal(pixels, clip[frame]):
                captions.append(text)
                attributes.append(p.attribute)
                frames.append(pixels)
        pad = 1 + self.negatives - len(frames)
        frames += [np.zeros_like(frames[0])] * pad
        return {
            "clip": _pixels(clip),  # (3, F, H, W)
            "images": _pixels(np.stack(frames)).transpose(0, 1).contiguous(),  # (G, 3, H, W)
            "captions": captions + [""] * pad, "attributes": attributes + [""] * pad,
            "valid": torch.tensor([True] * (len(captions)) + [False] * pad),
        }


def _rows(columns, b: int) -> list[list[str]]:
    """Collated per-item string lists (G tuples of B) back to B rows of G."""
    return [[str(col[i]) for col in columns] for i in range(b)]


def group_text(model: ShapeCLIP, pooled, batch: dict) -> tuple[list[list[str]], torch.Tensor, torch.Tensor]:
    """A :class:`ShapeCLIPDataset` batch's captions as B rows of G, ``valid`` (B, G) and their
    ShapeCLIP text features (B, G, D), zeros where invalid. ``pooled``: strings -> MiniLM pooled
    embeddings (a :class:`PooledTextCache`, or an encoder's ``pooled``)."""
    device = model.device
    valid = torch.as_tensor(batch["valid"]).bool()  # (B, G)
    b, g = valid.shape
    rows = _rows(batch["captions"], b)
    wanted = [rows[i][j] for i in range(b) for j in range(g) if valid[i, j]]
    feats = model.text_features(pooled(wanted).to(device))  # (M, D)
    text = feats.new_zeros(b, g, feats.shape[1])
    text[valid.to(device)] = feats  # row-major, like `wanted`
    return rows, valid.to(device), text


@torch.no_grad()
def retrieval_figures(model: ShapeCLIP, pooled, batches) -> dict[str, float]:
    """Top-1 retrieval among 10 (the truth and 9 one-attribute-off siblings), chance 0.1.

    ``batches``: collated :class:`ShapeCLIPDataset` items of any split; ``pooled`` as in
    :func:`group_text`. ``image_top1``: a frame's caption among its siblings' captions;
    ``video_top1``: the same for the clip; ``image_t2i_top1``: a caption's frame among its
    siblings' frames; ``image_pair_<attribute>``: how often the true caption beats one that
    changed that attribute (also ``video_pair_<attribute>``).
    """
    device = model.device
    counts: dict[str, list[float]] = {}
    for batch in batches:
        rows, valid, text = group_text(model, pooled, batch)  # text (B, G, D)
        b, g = valid.shape
        imgs = model.image_features(batch["images"].to(device).flatten(0, 1)).view(b, g, -1)
        vid = model.video_features(batch["clip"].to(device))  # (B, D)
        scores = {
            "image": torch.einsum("bd,bgd->bg", imgs[:, 0], text),
            "video": torch.einsum("bd,bgd->bg", vid, text),
            "image_t2i": torch.einsum("bd,bgd->bg", text[:, 0], imgs),
        }
        for name, sc in scores.items():
            sc = sc.masked_fill(~valid, float("-inf"))
            counts.setdefault(f"{name}_top1", []).extend((sc.argmax(1) == 0).float().tolist())
            if name == "image_t2i":
                continue
            wins = (sc[:, :1] > sc).cpu()
            for i, attrs in enumerate(_rows(batch["attributes"], b)):
                for j in range(1, g):
                    if valid[i, j]:
                        counts.setdefault(f"{name}_pair_{attrs[j]}", []).append(float(wins[i, j]))
    return {k: float(np.mean(v)) for k, v in sorted(counts.items())}


class ClipStage:
    name = "clip"

    def __init__(self, config: ClipStageConfig | None = None):
        self.config = c = config or ClipStageConfig()
        if c.init_from:
            self.model = load_trainable(ShapeCLIP, c.init_from, "ShapeCLIP")
        else:
            self.model = ShapeCLIP(channels=tuple(c.channels), embed_dim=c.embed_dim, text_hidden=c.text_hidden,
                                   stem=c.stem)
        self.text = text_encoder()
        self.texts = PooledTextCache(self.text, c.text_max_length, c.text_cache_size)
        if c.text_cache_file and Path(c.text_cache_file).is_file():
            self.texts.load(c.text_cache_file)
        if not c.init_from and c.whiten_items > 0:
            self.model.set_text_whitening(self.texts(self._whitening_sample(c.whiten_items)), c.whiten_eps)

    def _whitening_sample(self, items: int) -> list[str]:
        """Captions of the first train scenes and their siblings (both views): the space to whiten."""
        data = self.dataset("train")
        picks = [i + v * data.scenes for i in range(min(items, data.scenes)) for v in (0, 1)]
        return [t for i in picks for t in data[i]["captions"] if t]

    @classmethod
    def from_config(cls, data: dict | None) -> ClipStage:
        from ..config import structured

        return cls(structured(ClipStageConfig, data or {}, "stage section of the clip recipe"))

    def trainable_modules(self) -> list[nn.Module]:
        return [self.model]

    def modules(self) -> dict[str, nn.Module]:
        return {"shapeclip": self.model, "text": self.text}

    def dataset(self, split: str) -> Dataset:
        c = self.config
        self.world_settings = dict(c.world)  # the run summary records it
        if split == "train":
            return ShapeCLIPDataset("train", c.train_scenes, c.hard_negatives, WorldConfig(**c.world))
        return ShapeCLIPDataset(split, max(c.eval_items, c.sample_images), c.eval_negatives, WorldConfig(**c.world))

    # ---- loss -------------------------------------------------------------------------------
    def loss(self, batch: dict, generator: torch.Generator | None = None) -> dict[str, torch.Tensor]:
        device = self.model.device
        rows, valid, text = group_text(self.model, self.texts, batch)
        images = batch["images"].to(device)[valid]  # (M, 3, H, W): every valid member of every group
        captions = [t for row in rows for t in row if t]
        same = torch.tensor([[x == y for y in captions] for x in captions], device=device)  # (M, M)
        scale = self.model.logit_scale
        out = clip_loss(self.model.image_features(images), text[valid], scale, same=same)
        terms = {"image_loss": out["loss"], "image_acc": out["acc_i2t"], "logit_scale": scale}
        loss = out["loss"]
        v = min(self.config.video_batch, valid.shape[0])
        if v > 1 and self.config.video_weight > 0:
            anchors = [row[0] for row in rows[:v]]
            same_v = torch.tensor([[x == y for y in anchors] for x in anchors], device=device)
            vid = clip_loss(self.model.video_features(batch["clip"][:v].to(device)), text[:v, 0], scale,
                            hard=text[:v, 1:], hard_mask=valid[:v, 1:], same=same_v)
            loss = loss + self.config.video_weight * vid["loss"]
            terms.update(video_loss=vid["loss"], video_acc=vid["acc_i2t"])
        return {"loss": loss, **{k: t.detach() for k, t in terms.items()}}

    # ---- evaluation -------------------------------------------------------------------------
    def _val_batches(self, items: int, size: int = 32):
        ds = self.dataset("val")
        items = min(items, len(ds))
        for start in range(0, items, size):
            yield default_collate([ds[i] for i in range(start, min(items, start + size))])

    @torch.no_grad()
    def evaluate(self, batches: int = 4) -> dict[str, float]:
        """:func:`retrieval_figures` on validation scenes (``batches`` x 64, at most ``eval_items``)."""
        return retrieval_figures(self.model, self.texts, self._val_batches(min(self.config.eval_items, batches * 64)))

    @torch.no_grad()
    def sample(self, out_dir: Path, step: int) -> list[Path]:
        """A row of validation frames; a text sidecar with each one's top-3 captions (of all shown)."""
        out_dir = Path(out_dir)
        batch = next(self._val_batches(self.config.sample_images, self.config.sample_images))
        device = self.model.device
        images = batch["images"][:, 0]  # (B, 3, H, W)
        rows = _rows(batch["captions"], images.shape[0])
        pool = list(dict.fromkeys(t for row in rows for t in row if t))
        text = self.model.text_features(self.texts(pool).to(device))
        scores = self.model.image_features(images.to(device)) @ text.T  # (B, P)
        lines = []
        for i, row in enumerate(rows):
            top = scores[i].topk(min(3, len(pool)))
            lines.append(f"image {i}: {row[0]}")
            lines += [f"  {'*' if pool[j] == row[0] else ' '} {v:.3f} {pool[j]}"
                      for v, j in zip(top.values.tolist(), top.indices.tolist())]
        png = write_image(out_dir / f"clip_{step:06d}.png", grid([list(to_uint8(images))]))
        txt = out_dir / f"clip_{step:06d}.txt"
        txt.write_text("\n".join(lines) + "\n")
        return [png, txt]

    def export(self, folder: Path) -> None:
        self.model.save_pretrained(Path(folder) / "shapeclip", safe_serialization=True)
