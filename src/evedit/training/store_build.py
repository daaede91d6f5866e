"""``evedit data build``: render or read training items once, encode them, write a store.

Sources, by store kind (the formats the stages already read on the fly):

============  ===============================  ==================================================
kind          ShapeWorld (``--source shapeworld``) your own data (``--source PATH``)
============  ===============================  ==================================================
``image``     ``ImageCaptionDataset``           a folder of images with a captions table
``edit``      ``EditTripletDataset``            an InstructPix2Pix-layout ``.jsonl``/``.parquet``
``video``     ``ClipCaptionDataset``            a folder of videos with a captions table
``align``     ``AlignmentDataset``              an alignment manifest ``.jsonl``
============  ===============================  ==================================================

A build is resumable: each shard is written whole (temporary file, then rename) and the
manifest last, so running the same command again after an interruption encodes only the shards
still missing. Items are the first ``items`` of the train split (ShapeWorld: seeds 0..items-1).
"""

from __future__ import annotations

import json
import os
import time
from pathlib import Path

import torch
from einops import rearrange
from safetensors.torch import save_file
from torch.utils.data import DataLoader, Dataset, Subset
from tqdm.auto import tqdm

from ..errors import EveditError
from ..models import folder_spec
from ..models.codec import posterior
from .store import FORMAT, LAYOUTS, MANIFEST, SOURCE_KEYS, codec_hash, latent_coverage, text_hash

BUILD_STATE = ".build.json"  # the parameters of an unfinished build, to resume only the same one


def object_sizes(text: str | None) -> dict:
    """``--object-px "SMALL,LARGE"`` as WorldConfig settings (``{}`` when not given)."""
    if text is None:
        return {}
    try:
        small, large = (float(v) for v in text.split(","))
    except ValueError:
        raise EveditError(f"--object-px takes two diameters in px, SMALL,LARGE (e.g. 20,24); got '{text}'.") from None
    return {"small_px": small, "large_px": large}


def source_dataset(kind: str, source: str, items: int | None, frames: int = 8, size: int = 64,
                   tasks: tuple[str, ...] | None = None, settings: dict | None = None) -> Dataset:
    """The train items a store of ``kind`` encodes: ShapeWorld's, or a file/folder in a stage format.

    ``tasks`` limits ShapeWorld's items to those tasks' examples (an isolation run's store; an
    ``image`` or ``video`` item shows the example's input or its edited result). ``settings``:
    other ShapeWorld settings (``WorldConfig`` fields, e.g. the object diameters).
    """
    if settings and source != "shapeworld":
        raise EveditError("--object-px sets ShapeWorld's objects; it does not apply to your own data.")
    if kind not in LAYOUTS:
        raise EveditError(f"Unknown store kind '{kind}'; choose one of {', '.join(LAYOUTS)}.")
    if tasks is not None:
        from ..world import TASKS

        if source != "shapeworld":
            raise EveditError("--tasks chooses ShapeWorld's items; it does not apply to your own data.")
        unknown = sorted(set(tasks) - set(TASKS))
        if unknown or not tasks:
            raise EveditError(f"--tasks takes ShapeWorld task names ({', '.join(TASKS)}); got {', '.join(tasks) or 'none'}.")
    if source == "shapeworld":
        from .. import world

        if items is None:
            raise EveditError("A ShapeWorld store needs --items (how many train items to render).")
        cls = {"image": world.ImageCaptionDataset, "edit": world.EditTripletDataset,
               "video": world.ClipCaptionDataset, "align": world.AlignmentDataset}[kind]
        extra = {"tasks": tuple(tasks)} if tasks else {}
        return cls(split="train", length=items, config=world.WorldConfig(frames=frames, **(settings or {})), **extra)
    data = _file_dataset(kind, Path(source), frames, size)
    return Subset(data, range(min(items, len(data)))) if items else data


def _file_dataset(kind: str, path: Path, frames: int, size: int) -> Dataset:
    from ..world import TASKS

    if kind == "image":
        from .data import ImageCaptionFolder

        return ImageCaptionFolder(path, size=size)
    if kind == "edit":
        from .edit_data import EditTripletFile

        return EditTripletFile(path, size=size, tasks=tuple(TASKS))
    if kind == "video":
        from .video_data import VideoCaptionFolder

        return VideoCaptionFolder(path, size=size, frames=frames)
    from .fdd.manifest import AlignmentManifest

    return AlignmentManifest(path, frames=frames, tasks=tuple(TASKS))


@torch.no_grad()
def encode_latents(vae, pixels: torch.Tensor, video: bool) -> tuple[torch.Tensor, torch.Tensor]:
    """Pixels (B, 3, H, W) or (B, 3, F, H, W) -> scaled posterior mode and std, same layout."""
    b = pixels.shape[0]
    flat = rearrange(pixels, "b c f h w -> (b f) c h w") if video else pixels
    mode, std = posterior(vae, flat.to(vae.device))
    if video:
        mode, std = (rearrange(z, "(b f) c h w -> b c f h w", b=b) for z in (mode, std))
    return mode.float().cpu(), std.float().cpu()


def encode_shard(kind: str, data: Dataset, start: int, stop: int, vae, text, batch_size: int,
                 bar=None, workers: int = 0) -> dict[str, torch.Tensor]:
    """Items ``range(start, stop)`` of ``data`` as one shard's tensors (fp16 latents, a text table).

    ``workers`` processes render (or read) the items while the codec encodes, in item order."""
    lay, keys = LAYOUTS[kind], SOURCE_KEYS[kind]
    fields: dict[str, list] = {}
    table: dict[str, int] = {"": 0}  # row 0: the null text
    for batch in DataLoader(Subset(data, range(start, stop)), batch_size=batch_size, num_workers=workers):
        for name in lay.latents:
            mode, std = encode_latents(vae, batch[keys[name]], lay.video)
            fields.setdefault(name, []).append(mode.half())
            if lay.with_std:
                fields.setdefault(f"{name}_std", []).append(std.half())
        for name in lay.texts:
            rows = [table.setdefault(s, len(table)) for s in batch[keys[name]]]
            fields.setdefault(f"{name}_index", []).append(torch.tensor(rows, dtype=torch.int32))
        for name in lay.ints:
            fields.setdefault(name, []).append(torch.as_tensor(batch[keys[name]]).to(torch.int32))
        for name in (n for n in lay.masks if keys[n] in batch):  # the source gives this map
            grid = fields[lay.latents[0]][-1].shape[-2:]
            fields.setdefault(name, []).append(latent_coverage(batch[keys[name]], grid).half())
        if bar is not None:
            bar.update(len(batch[keys[lay.latents[0]]]))
    tensors = {name: torch.cat(parts) for name, parts in fields.items()}
    strings = list(table)  # insertion order = row order
    states, pooled = [], []
    for i in range(0, len(strings), 128):
        emb = text(strings[i:i + 128])
        states.append(emb.hidden_states.float().cpu().half())
        pooled.append(emb.pooled.float().cpu().half())
    tensors["text_states"], tensors["text_pooled"] = torch.cat(states), torch.cat(pooled)
    return {k: v.contiguous() for k, v in tensors.items()}


def _check_resume(out: Path, params: dict) -> None:
    if (out / MANIFEST).is_file():
        raise EveditError(f"'{out}' already holds a finished store; choose another --out or delete it.")
    state = out / BUILD_STATE
    if state.is_file():
        before = json.loads(state.read_text(encoding="utf-8"))
        if before != params:
            raise EveditError(f"'{out}' holds an unfinished build with other settings; delete it or use "
                              "the same command.")
    elif out.exists() and any(out.iterdir()):
        raise EveditError(f"'{out}' exists and is not a store; choose another --out.")
    out.mkdir(parents=True, exist_ok=True)
    state.write_text(json.dumps(params, indent=1), encoding="utf-8")


def build_store(kind: str, data: Dataset, vae, text, out: str | Path, *, source: str = "shapeworld",
                vae_path: str = "", shard_items: int = 1024, batch_size: int = 64,
                progress: bool = True, workers: int = 0, world: dict | None = None) -> dict:
    """Encode every item of ``data`` into the store ``out``; returns its manifest. ``workers``
    render (or read) items in parallel processes; the store is the same for any number. ``world``:
    the ShapeWorld settings the items were rendered with, where not the preset's (recorded)."""
    out, n = Path(out), len(data)
    if n == 0:
        raise EveditError("The source holds no items to store.")
    codec = {"hash": codec_hash(vae), "latent_channels": int(vae.config.latent_channels),
             "scaling_factor": float(vae.config.scaling_factor), "path": str(vae_path)}
    encoder = {"hash": text_hash(text), "name": type(text).__name__, "max_length": int(text.max_length)}
    params = {"kind": kind, "items": n, "shard_items": shard_items, "source": source,
              "codec": codec["hash"], "text": encoder["hash"], **({"world": world} if world else {})}
    _check_resume(out, params)
    names = [f"shard-{s:05d}.safetensors" for s in range((n + shard_items - 1) // shard_items)]
    began = time.perf_counter()
    bar = tqdm(total=n, desc=f"store {kind}", unit="item", disable=not progress, dynamic_ncols=True)
    for s, name in enumerate(names):
        start, stop = s * shard_items, min(n, (s + 1) * shard_items)
        if (out / name).is_file():  # written by an earlier, interrupted run of the same build
            bar.update(stop - start)
            continue
        tensors = encode_shard(kind, data, start, stop, vae, text, batch_size, bar, workers)
        tmp = out / f".{name}.tmp"
        save_file(tensors, str(tmp), metadata={"format": FORMAT, "kind": kind})
        os.replace(tmp, out / name)
    bar.close()
    manifest = {"format": FORMAT, "kind": kind, "items": n, "shard_items": shard_items, "shards": names,
                "codec": codec, "text": encoder, "source": source, **({"world": world} if world else {}),
                "build_seconds_last_run": round(time.perf_counter() - began, 1),
                "bytes": sum((out / name).stat().st_size for name in names)}
    tmp = out / f".{MANIFEST}.tmp"
    tmp.write_text(json.dumps(manifest, indent=1), encoding="utf-8")
    os.replace(tmp, out / MANIFEST)
    (out / BUILD_STATE).unlink(missing_ok=True)
    return manifest


def build_command(kind: str, out: str | Path, *, items: int | None, source: str = "shapeworld",
                  vae: str | Path = "runs/codec/export/vae", frames: int = 8, shard_items: int = 1024,
                  batch_size: int = 64, progress: bool = True, tasks: tuple[str, ...] | None = None,
                  workers: int = 0, object_px: str | None = None) -> dict:
    """What ``evedit data build`` does: load the frozen encoders (on the GPU when there is one),
    pick the source, build."""
    from .stages.common import load_vae, text_encoder
    from .stages.t2i import resolve_vae_folder

    if kind not in LAYOUTS:
        raise EveditError(f"Unknown store kind '{kind}'; choose one of {', '.join(LAYOUTS)}.")
    if shard_items < 1 or batch_size < 1 or workers < 0:
        raise EveditError("--shard-items and --batch-size must be at least 1, --workers at least 0.")
    folder = resolve_vae_folder(vae)
    world = object_sizes(object_px)
    if source == "shapeworld" and object_px is None:  # --vae MODEL: the world that model was trained on
        world = folder_spec(vae).world
    data = source_dataset(kind, source, items, frames=frames, tasks=tasks, settings=world)
    label = f"{source} ({', '.join(tasks)})" if tasks else source
    device = "cuda" if torch.cuda.is_available() else "cpu"
    return build_store(kind, data, load_vae(folder).to(device), text_encoder().to(device), out, source=label,
                       vae_path=str(folder), shard_items=shard_items, batch_size=batch_size, progress=progress,
                       workers=workers, world=world)
