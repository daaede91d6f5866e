"""TGVE (LOVEU-TGVE-2023) and TGVE+ (facebook/tgve_plus) from a local folder.

TGVE layout (``--data DIR``, the unpacked ``loveu-tgve-2023`` release)::

    LOVEU-TGVE-2023_Dataset.csv        Video name, Our GT caption, Style / Object / Background /
                                       Multiple Changes Caption; "... Videos:" rows open a subset
    DAVIS_480p/ youtube_480p/ videvo_480p/
        480p_frames/<video>/*.jpg      or 480p_videos/<video>.mp4 (either is enough)

TGVE items are the 4 caption edits of each video (key ``{subset}/{video}/{task}``, the submission
layout). TGVE gives output captions, not instructions: instructions come from InstructVid2Vid's
``loveu_tgve_edit_prompt_dict.json`` or from TGVE+ rows in the same folder when present, else the
output caption stands in (and a warning says so).

TGVE+: the released rows (instruction, input and output captions, relative video path, and the
task where the export has it) as JSON, JSONL, CSV or parquet (parquet needs pyarrow) anywhere in
``DIR`` named ``*tgve_plus*`` or ``train-*.parquet``; videos are found under ``DIR`` like TGVE's.
Column names are matched loosely (:data:`COLUMN_ALIASES`): the released export's exact names were
not available here to check.
"""

from __future__ import annotations

import csv
import json
import re
import warnings
from pathlib import Path

from ..errors import EveditError
from ..io import IMAGE_EXTENSIONS, VIDEO_EXTENSIONS
from .items import Item

TGVE_CSV = "LOVEU-TGVE-2023_Dataset.csv"
SUBSETS: tuple[str, ...] = ("DAVIS_480p", "youtube_480p", "videvo_480p")
TASK_COLUMNS: dict[str, str] = {"style": "Style Change Caption", "object": "Object Change Caption",
                                "background": "Background Change Caption", "multiple": "Multiple Changes Caption"}
TGVE_PLUS_TASKS: tuple[str, ...] = ("style", "object", "background", "multiple", "remove", "add", "texture")
INSV2V_PROMPTS = "loveu_tgve_edit_prompt_dict.json"
COLUMN_ALIASES: dict[str, tuple[str, ...]] = {
    "instruction": ("instruction", "edit_instruction", "edit_prompt", "prompt", "instruct"),
    "input_caption": ("input_caption", "source_caption", "src_caption", "original_caption", "caption_input",
                      "input_prompt", "source_prompt"),
    "output_caption": ("output_caption", "target_caption", "tgt_caption", "edited_caption", "caption_output",
                       "output_prompt", "target_prompt"),
    "video": ("video", "video_path", "relative_path", "path", "video_name", "video_file", "file_name"),
    "task": ("task", "edit_type", "type", "category", "edit_task", "task_type"),
}
DEFAULT_DATA = Path("data/loveu-tgve-2023")
_GET = ("download the LOVEU-TGVE-2023 release (loveu-tgve-2023.zip, linked from showlab/loveu-tgve-2023 on "
        "GitHub) and unpack it")


def _slug(text: str) -> str:
    return re.sub(r"[^a-z0-9]+", "_", str(text).strip().lower()).strip("_")


def find_media(root: Path, subset: str | None, video: str) -> Path | None:
    """A video's frame folder or file under ``root`` (any subset when ``subset`` is None)."""
    for sub in ([subset] if subset else list(SUBSETS)):
        base = root / sub
        for cand in (base / "480p_frames" / video, base / video):
            if cand.is_dir() and any(p.suffix.lower() in IMAGE_EXTENSIONS for p in cand.iterdir()):
                return cand
        for folder in (base / "480p_videos", base):
            for ext in VIDEO_EXTENSIONS:
                if (folder / f"{video}{ext}").is_file():
                    return folder / f"{video}{ext}"
    return None


def _subset_of(name: str) -> str | None:
    low = name.lower()
    return next((s for s in SUBSETS if s.split("_")[0].lower() in low), None)


def read_tgve_rows(root: Path) -> list[dict]:
    """Rows of the TGVE CSV: ``subset``, ``video``, ``caption`` and the four task captions."""
    path = root / TGVE_CSV
    if not path.is_file():
        raise EveditError(f"TGVE data not found: '{path}' is missing; {_GET} so that '{root}' holds {TGVE_CSV} "
                          f"and {', '.join(SUBSETS)} (or pass --data DIR).")
    with open(path, newline="", encoding="utf-8-sig") as fh:
        reader = csv.DictReader(fh)
        missing = [c for c in ("Video name", "Our GT caption", *TASK_COLUMNS.values()) if c not in (reader.fieldnames or [])]
        if missing:
            raise EveditError(f"'{path}' lacks the TGVE column {missing[0]!r}.")
        rows, subset = [], None
        for rec in reader:
            name = (rec.get("Video name") or "").strip()
            captions = {t: (rec.get(c) or "").strip() for t, c in TASK_COLUMNS.items()}
            if not name:
                continue
            if not any(captions.values()):  # a section header such as "DAVIS Videos:"
                subset = _subset_of(name) or subset
                continue
            rows.append({"subset": subset, "video": name, "caption": (rec.get("Our GT caption") or "").strip(),
                         "captions": captions})
    return rows


def _instructions(root: Path) -> dict[tuple[str, str], str]:
    """(video, task) -> instruction from InsV2V's prompt file or TGVE+ rows, when present."""
    path = root / INSV2V_PROMPTS
    if path.is_file():
        data = json.loads(path.read_text())
        return {(v, k.removeprefix("edit_")): str(s) for v, d in data.items() for k, s in d.items()}
    rows_file = find_tgve_plus_rows(root, required=False)
    if rows_file is None:
        return {}
    return {(Path(r["video"]).stem, r["task"]): r["instruction"] for r in read_tgve_plus_rows(rows_file)}


def tgve_items(root: str | Path = DEFAULT_DATA) -> list[Item]:
    """The 4 x 76 TGVE edits, keys in the submission layout."""
    root = Path(root)
    rows, instructions = read_tgve_rows(root), _instructions(root)
    items, stand_ins = [], 0
    for row in rows:
        media = _media_or_fail(root, row["subset"], row["video"])
        subset = row["subset"] or media.relative_to(root).parts[0]
        for task, caption in row["captions"].items():
            instruction = instructions.get((row["video"], task))
            stand_ins += instruction is None
            items.append(Item(key=f"{subset}/{row['video']}/{task}", task=task, instruction=instruction or caption,
                              input_caption=row["caption"], output_caption=caption, video=media, group=subset,
                              index=len(items)))
    if stand_ins:
        warnings.warn(f"{stand_ins} TGVE edits have no instruction (no {INSV2V_PROMPTS} or TGVE+ rows in '{root}'); "
                      "their output captions are given to the editors instead.", stacklevel=2)
    return items


def _media_or_fail(root: Path, subset: str | None, video: str) -> Path:
    media = find_media(root, subset, video)
    if media is None:
        where = f"{subset or '<subset>'}/480p_frames/{video}/ or {subset or '<subset>'}/480p_videos/{video}.mp4"
        raise EveditError(f"TGVE video '{video}' not found under '{root}' (expected {where}); {_GET} there.")
    return media


# ----------------------------------------------------------------------------- TGVE+


def find_tgve_plus_rows(root: Path, required: bool = True) -> Path | None:
    """The TGVE+ export file under ``root`` (or ``root`` itself when it is a file)."""
    if root.is_file():
        return root
    suffixes = (".jsonl", ".json", ".csv", ".parquet")
    found = sorted(p for pattern in ("*tgve_plus*", "*/*tgve_plus*", "**/train-*.parquet", "tgve_plus/*")
                   for p in root.glob(pattern) if p.is_file() and p.suffix.lower() in suffixes)
    if found:
        return found[0]
    if not required:
        return None
    raise EveditError(
        f"TGVE+ rows not found in '{root}': export the Hugging Face dataset facebook/tgve_plus to JSONL (e.g. "
        "`datasets.load_dataset('facebook/tgve_plus', split='train').to_json('tgve_plus.jsonl')` on a connected "
        f"machine) and put tgve_plus.jsonl in '{root}' beside the unpacked TGVE videos."
    )


def _load_records(path: Path) -> list[dict]:
    suffix = path.suffix.lower()
    if suffix == ".jsonl":
        return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]
    if suffix == ".json":
        data = json.loads(path.read_text(encoding="utf-8"))
        if isinstance(data, dict):  # {"train": [...]} or column-oriented {"col": [...]}
            data = data.get("train", data.get("rows", data))
            if isinstance(data, dict):
                keys = list(data)
                data = [dict(zip(keys, vals)) for vals in zip(*(data[k] for k in keys))]
        return [r.get("row", r) for r in data]
    if suffix == ".csv":
        with open(path, newline="", encoding="utf-8-sig") as fh:
            return list(csv.DictReader(fh))
    try:
        import pyarrow.parquet as pq
    except ImportError:
        raise EveditError(f"Reading '{path}' needs pyarrow, which evedit does not install; export the rows to "
                          "JSONL instead (`datasets.load_dataset(...).to_json('tgve_plus.jsonl')`).") from None
    return pq.read_table(path).to_pylist()


def _canonical_task(value: str) -> str:
    low = _slug(value)
    for task, stem in (("remove", "remov"), ("add", "add"), ("texture", "textur"), ("background", "background"),
                       ("multiple", "multiple"), ("style", "style"), ("object", "object")):
        if stem in low:
            return task
    return low or "edit"


def read_tgve_plus_rows(path: Path) -> list[dict]:
    """Rows as dicts with ``instruction``, ``input_caption``, ``output_caption``, ``video``, ``task``."""
    records = _load_records(path)
    if not records:
        raise EveditError(f"'{path}' holds no TGVE+ rows.")
    columns = {_slug(k): k for k in records[0]}
    pick = {}
    for field, aliases in COLUMN_ALIASES.items():
        hit = next((columns[a] for a in aliases if a in columns), None)
        if hit is None and field != "task":
            raise EveditError(f"'{path}' has no {field.replace('_', ' ')} column (looked for "
                              f"{', '.join(aliases)}; found {', '.join(records[0])}).")
        pick[field] = hit
    rows = []
    for rec in records:
        row = {f: str(rec.get(c) or "").strip() for f, c in pick.items() if c is not None}
        row["task"] = _canonical_task(row.get("task") or _task_from_path(row["video"]))
        rows.append(row)
    return rows


def _task_from_path(video: str) -> str:
    parts = Path(video).parts
    return parts[-1] if len(parts) > 1 and _canonical_task(parts[-1]) in TGVE_PLUS_TASKS else ""


def tgve_plus_items(root: str | Path = DEFAULT_DATA) -> list[Item]:
    """One item per TGVE+ row; keys ``{subset}/{video}/{task}`` (``-2``, ``-3`` ... for repeats)."""
    root = Path(root)
    rows_file = find_tgve_plus_rows(root)
    media_root = rows_file.parent if root.is_file() else root
    items, seen = [], {}
    for row in read_tgve_plus_rows(rows_file):
        rel = Path(row["video"])
        media = media_root / rel if (media_root / rel).exists() else None
        subset = next((p for p in rel.parts if p in SUBSETS), None)
        name = rel.stem if rel.suffix else rel.name
        media = media or _media_or_fail(media_root, subset, name)
        subset = subset or next((p for p in media.relative_to(media_root).parts if p in SUBSETS), "tgve")
        base = f"{subset}/{name}/{row['task']}"
        seen[base] = seen.get(base, 0) + 1
        items.append(Item(key=base if seen[base] == 1 else f"{base}-{seen[base]}", task=row["task"],
                          instruction=row["instruction"], input_caption=row["input_caption"],
                          output_caption=row["output_caption"], video=media, group=subset, index=len(items)))
    return items
