"""Encoded training stores: render or read items once, encode them once, train on them many epochs.

A store is a folder::

    store.json              the manifest: kind, item count, shards, and which codec and text
                            encoder made it (content hashes); written last, so a folder without it
                            is an unfinished build (``evedit data build`` resumes it)
    shard-00000.safetensors one shard of ``shard_items`` items (the last may hold fewer)

Each shard is one safetensors file (memory-mapped when read, one slice per field and item): the
items' latents in fp16 (scaled by the codec's ``scaling_factor``, the codec's posterior mode, and
for ``image`` stores its std too so t2i keeps sampling the posterior), and a text table of the
shard's distinct strings (``text_states`` (U, L, D) padded to the encoder's ``max_length`` as the
UNet sees them, ``text_pooled`` (U, Dp)), which items point into by index. Row 0 of every text
table is the empty string, the null condition of classifier-free guidance.

The format was chosen by measured read speed and size (``benchmarks/bench_store.py``,
``benchmarks/results/store.md``). Only the train split is stored: the stages' validation items are
few, fixed, and encoded once per run.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from pathlib import Path

import torch
from safetensors import safe_open
from torch.nn import functional as F
from torch.utils.data import Dataset

from ..errors import EveditError

FORMAT = "evedit-store/1"
MANIFEST = "store.json"


@dataclass(frozen=True)
class Layout:
    """What one kind of store holds per item: latent fields, text fields, integer fields."""

    latents: tuple[str, ...]
    texts: tuple[str, ...]
    ints: tuple[str, ...] = ()
    video: bool = False  # latents are clips (C, F, h, w) rather than images (C, h, w)
    with_std: bool = False  # also the posterior std of each latent (t2i samples the posterior)
    # Optional coverage maps at the latent grid (fp16, (1, h, w) in [0, 1], the source item's
    # pixel mask average-pooled): stored when the source gives them (ShapeWorld), else absent.
    masks: tuple[str, ...] = ()


# Which stage reads which kind, and which source-item keys fill which fields.
LAYOUTS = {
    "image": Layout(latents=("latent",), texts=("caption",), with_std=True, masks=("objects",)),
    "edit": Layout(latents=("source", "target"), texts=("caption", "instruction"), ints=("task",)),
    "video": Layout(latents=("clip",), texts=("caption",), video=True),
    "align": Layout(latents=("source",), texts=("caption", "instruction"), ints=("task",), video=True),
}
SOURCE_KEYS = {
    "image": {"latent": "image", "caption": "caption", "objects": "objects"},
    "edit": {"source": "input_image", "target": "output_image", "caption": "output_caption",
             "instruction": "instruction", "task": "task"},
    "video": {"clip": "clip", "caption": "caption"},
    "align": {"source": "clip", "caption": "output_caption", "instruction": "instruction", "task": "task"},
}
STAGE_KINDS = {"t2i": "image", "edit-adapter": "edit", "video-adapter": "video", "align": "align"}


def content_hash(module: torch.nn.Module, extra: str = "") -> str:
    """SHA-256 (first 16 hex digits) of a module's weights in fp32, keys sorted, plus ``extra``.

    Weights, not files: the same codec loaded from fp16 or fp32 files, or from another folder,
    hashes the same, and any changed weight changes the hash.
    """
    digest = hashlib.sha256(extra.encode())
    for key, value in sorted(module.state_dict().items()):
        digest.update(key.encode())
        digest.update(value.detach().to("cpu", torch.float32).contiguous().numpy().tobytes())
    return digest.hexdigest()[:16]


def codec_hash(vae) -> str:
    norm = [getattr(vae.config, k, None) for k in ("latents_mean", "latents_std")]
    extra = f";latents_mean={norm[0]!r};latents_std={norm[1]!r}" if None not in norm else ""
    return content_hash(vae, f"scaling_factor={float(vae.config.scaling_factor)!r}{extra}")


def text_hash(text) -> str:
    return content_hash(text.model, f"{type(text).__name__} max_length={text.max_length}")


def read_manifest(folder: Path) -> dict:
    path = Path(folder) / MANIFEST
    if not Path(folder).is_dir():
        raise EveditError(f"The store '{folder}' does not exist; build it with `evedit data build`.")
    if not path.is_file():
        raise EveditError(f"The store '{folder}' is unfinished (no {MANIFEST}); run the same "
                          "`evedit data build` again to finish it.")
    try:
        manifest = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError) as exc:
        raise EveditError(f"The store manifest '{path}' is not readable JSON.") from exc
    if manifest.get("format") != FORMAT:
        raise EveditError(f"'{path}' is not an evedit store of format {FORMAT}.")
    return manifest


class EncodedStore(Dataset):
    """Items of a store, as the stages' losses read them.

    ``store[i]`` is a dict: per latent field ``name`` a float32 tensor (and ``name_std`` where
    stored), per text field ``name_states`` (L, D) and ``name_pooled`` (Dp), per int field a
    0-d int64 tensor, per mask field the store holds (``mask_fields``) a (1, h, w) float32 map.
    ``null_states`` / ``null_pooled`` are the empty text's.
    """

    def __init__(self, folder: str | Path, kind: str | None = None):
        self.folder = Path(folder)
        self.manifest = read_manifest(self.folder)
        self.kind = self.manifest["kind"]
        if kind is not None and self.kind != kind:
            raise EveditError(f"The store '{self.folder}' holds '{self.kind}' items; this stage needs "
                              f"a '{kind}' store.")
        self.layout = LAYOUTS[self.kind]
        self.shards = [self.folder / name for name in self.manifest["shards"]]
        self.shard_items = int(self.manifest["shard_items"])
        self.n = int(self.manifest["items"])
        missing = [p.name for p in self.shards if not p.is_file()]
        if missing:
            raise EveditError(f"The store '{self.folder}' lacks shard '{missing[0]}'; rebuild it.")
        self._handles: dict[int, object] = {}
        null = self._open(0)
        self.null_states = null.get_slice("text_states")[0:1].float()  # (1, L, D)
        self.null_pooled = null.get_slice("text_pooled")[0:1].float()  # (1, Dp)
        self.mask_fields = tuple(name for name in self.layout.masks if name in null.keys())

    def check(self, vae=None, text=None) -> None:
        """Refuse the store when it was encoded by another codec or text encoder."""
        for what, part, hasher in (("codec", vae, codec_hash), ("text", text, text_hash)):
            if part is None:
                continue
            made_by = self.manifest[what]["hash"]
            if hasher(part) != made_by:
                raise EveditError(
                    f"The store '{self.folder}' was encoded by another {what} encoder (hash {made_by}) "
                    f"than this stage loads; rebuild it with `evedit data build` for this model."
                )

    def column(self, name: str) -> torch.Tensor:
        """One int field (``task``, ...) of every item, in item order."""
        if name not in self.layout.ints:
            raise EveditError(f"A '{self.kind}' store has no per-item field '{name}'.")
        return torch.cat([self._open(i).get_slice(name)[:] for i in range(len(self.shards))]).long()[:self.n]

    def _open(self, shard: int):
        if shard not in self._handles:
            self._handles[shard] = safe_open(str(self.shards[shard]), framework="pt")
        return self._handles[shard]

    def __len__(self) -> int:
        return self.n

    def __getitem__(self, index: int) -> dict[str, torch.Tensor]:
        if not 0 <= index < self.n:
            raise IndexError(index)
        shard, row = divmod(int(index), self.shard_items)
        f, lay = self._open(shard), self.layout
        item = {}
        stds = tuple(f"{n}_std" for n in lay.latents) if lay.with_std else ()
        for name in lay.latents + stds:
            item[name] = f.get_slice(name)[row:row + 1][0].float()
        for name in lay.texts:
            t = int(f.get_slice(f"{name}_index")[row:row + 1][0])
            item[f"{name}_states"] = f.get_slice("text_states")[t:t + 1][0].float()
            item[f"{name}_pooled"] = f.get_slice("text_pooled")[t:t + 1][0].float()
        for name in lay.ints:
            item[name] = f.get_slice(name)[row:row + 1][0].long()
        for name in self.mask_fields:
            item[name] = f.get_slice(name)[row:row + 1][0].float()
        return item

    def __getstate__(self):  # DataLoader workers reopen the shards themselves
        state = dict(self.__dict__)
        state["_handles"] = {}
        return state


def latent_coverage(masks: torch.Tensor, grid) -> torch.Tensor:
    """(B, 1, H, W) pixel masks -> (B, 1, h, w) float: the share of each latent cell (``grid`` = (h, w))
    they cover, as an image store keeps a frame's objects and the t2i stage's object weighting reads them."""
    return F.adaptive_avg_pool2d(masks.float(), tuple(grid))


def store_world(data) -> dict:
    """The ShapeWorld settings a stage's store was rendered in (its manifest's ``world``, e.g.
    ``{"small_px": 20, "large_px": 24}``); ``{}`` (the preset world) for other data or none recorded.
    ``data`` is the stage's ``data`` section (a dict or an attribute-style config)."""
    get = data.get if hasattr(data, "get") else lambda key: getattr(data, key, None)
    folder = Path(get("path") or "")
    if get("kind") != "store" or not (folder / MANIFEST).is_file():
        return {}
    return dict(read_manifest(folder).get("world") or {})


def open_store(data: dict, stage: str, vae=None, text=None) -> EncodedStore:
    """The store a stage's ``data: {kind: store, path: ...}`` names, checked against its encoders."""
    if not data.get("path"):
        raise EveditError(f"Stage {stage}: data of kind 'store' needs a 'path' to a store folder.")
    store = EncodedStore(data["path"], kind=STAGE_KINDS[stage])
    store.check(vae, text)
    return store


def drop_states(states: torch.Tensor, mask: torch.Tensor, null: torch.Tensor) -> torch.Tensor:
    """(B, L, D) text states with the rows where ``mask`` is True replaced by ``null`` (1, L, D)."""
    keep = (~mask).to(states.device).view(-1, 1, 1).to(states.dtype)
    return states * keep + null.to(states) * (1 - keep)
