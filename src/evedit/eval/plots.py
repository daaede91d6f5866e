"""Pictures of an evaluation, drawn with PIL (no matplotlib): metric bar charts and sample grids.

- :func:`bar_chart`: grouped bars (one group per task plus "all", one bar per editor), a zero
  line, a few value ticks and a legend.
- :func:`sample_grid`: columns input | each editor | ground truth; the PNG stacks frames as rows,
  the GIF plays them.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw, ImageFont

from ..io import write_video

PALETTE = [(31, 119, 180), (255, 127, 14), (44, 160, 44), (214, 39, 40), (148, 103, 189), (140, 86, 75),
           (227, 119, 194), (127, 127, 127), (188, 189, 34), (23, 190, 207)]
BG, INK, GRID = (255, 255, 255), (30, 30, 30), (225, 225, 225)


def _font():
    return ImageFont.load_default()


def _text_w(draw: ImageDraw.ImageDraw, text: str, font) -> int:
    box = draw.textbbox((0, 0), text, font=font)
    return box[2] - box[0]


def _ticks(lo: float, hi: float, n: int = 5) -> list[float]:
    span = hi - lo
    raw = span / max(1, n - 1)
    mag = 10 ** np.floor(np.log10(raw))
    step = min((m * mag for m in (1, 2, 2.5, 5, 10) if m * mag >= raw), default=raw)
    start = np.ceil(lo / step) * step
    return [float(v) for v in np.arange(start, hi + step * 1e-6, step)]


def bar_chart(title: str, groups: Sequence[str], series: dict[str, Sequence[float | None]],
              path: str | Path, bar: int = 12, height: int = 260) -> Path:
    """Grouped bar chart: ``series[name][i]`` is the bar of ``name`` in group ``groups[i]`` (None: no bar)."""
    names = list(series)
    vals = [v for s in series.values() for v in s if v is not None and np.isfinite(v)]
    lo, hi = min([0.0, *vals]), max([0.0, *vals])
    if hi - lo < 1e-12:
        hi = lo + 1.0
    pad = 0.05 * (hi - lo)
    lo, hi = (lo - pad if lo < 0 else lo), hi + pad
    font = _font()
    left, top, bottom = 56, 30, 40
    probe = ImageDraw.Draw(Image.new("RGB", (1, 1)))
    group_w = max(bar * len(names) + 14, max(_text_w(probe, g, font) for g in groups) + 10)
    legend_h = 16 * ((len(names) + 3) // 4)
    width = max(left + group_w * len(groups) + 10, left + 150 * min(4, len(names)), 360)
    img = Image.new("RGB", (width, top + height + bottom + legend_h), BG)
    d = ImageDraw.Draw(img)
    d.text((left, 8), title, fill=INK, font=font)

    def y_of(v: float) -> int:
        return int(top + (hi - v) / (hi - lo) * height)

    for t in _ticks(lo, hi):
        y = y_of(t)
        d.line([(left, y), (width - 8, y)], fill=GRID)
        label = f"{t:.3g}"
        d.text((left - 6 - _text_w(d, label, font), y - 6), label, fill=INK, font=font)
    zero = y_of(0.0)
    for gi, group in enumerate(groups):
        gx = left + gi * group_w
        x0 = gx + (group_w - bar * len(names)) // 2
        for si, name in enumerate(names):
            v = series[name][gi]
            if v is None or not np.isfinite(v):
                continue
            y = y_of(float(v))
            d.rectangle([x0 + si * bar, min(y, zero), x0 + (si + 1) * bar - 2, max(y, zero)],
                        fill=PALETTE[si % len(PALETTE)])
        d.text((gx + (group_w - _text_w(d, group, font)) // 2, top + height + 6), group, fill=INK, font=font)
    d.line([(left, zero), (width - 8, zero)], fill=INK)
    d.line([(left, top), (left, top + height)], fill=INK)
    for si, name in enumerate(names):
        x, y = left + (si % 4) * 150, top + height + bottom - 14 + 16 * (si // 4) + 14
        d.rectangle([x, y + 2, x + 10, y + 12], fill=PALETTE[si % len(PALETTE)])
        d.text((x + 14, y), name, fill=INK, font=font)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    img.save(path)
    return path


def _fit(frames: np.ndarray, cell: int) -> np.ndarray:
    """Frames scaled to ``cell`` pixels high (nearest when enlarging small ShapeWorld clips)."""
    h, w = frames.shape[1:3]
    size = (max(1, round(w * cell / h)), cell)
    method = Image.NEAREST if h < cell else Image.BICUBIC
    return np.stack([np.asarray(Image.fromarray(f).resize(size, method)) for f in frames])


def _label_strip(labels: Sequence[str], widths: Sequence[int], gap: int, height: int = 16) -> np.ndarray:
    img = Image.new("RGB", (sum(widths) + gap * (len(widths) - 1), height), BG)
    d, font, x = ImageDraw.Draw(img), _font(), 0
    for label, w in zip(labels, widths):
        d.text((x + 2, 2), label[: max(4, w // 6)], fill=INK, font=font)
        x += w + gap
    return np.asarray(img)


def _row(videos: Sequence[np.ndarray], f: int, gap: int) -> np.ndarray:
    parts = []
    for i, v in enumerate(videos):
        parts.append(v[min(f, len(v) - 1)])
        if i < len(videos) - 1:
            parts.append(np.full((v.shape[1], gap, 3), 255, np.uint8))
    return np.concatenate(parts, axis=1)


def sample_grid(columns: dict[str, np.ndarray], path_stem: str | Path, title: str = "", cell: int = 96,
                max_rows: int = 8, fps: float = 8.0) -> tuple[Path, Path]:
    """Write ``<stem>.png`` (frames as rows) and ``<stem>.gif`` (animated) of labelled columns."""
    gap = 4
    videos = [_fit(v, cell) for v in columns.values()]
    widths = [v.shape[2] for v in videos]
    labels = _label_strip(list(columns), widths, gap)
    n = max(len(v) for v in videos)
    rows = np.linspace(0, n - 1, min(n, max_rows)).round().astype(int)
    strip = [labels] + [np.concatenate([_row(videos, f, gap), np.full((gap, labels.shape[1], 3), 255, np.uint8)])
                        for f in rows]
    if title:
        strip.insert(0, _label_strip([title], [labels.shape[1]], gap))
    stem = Path(path_stem)
    stem.parent.mkdir(parents=True, exist_ok=True)
    png = stem.with_suffix(".png")
    Image.fromarray(np.concatenate(strip)).save(png)
    head = [labels] if not title else [_label_strip([title], [labels.shape[1]], gap), labels]
    anim = np.stack([np.concatenate([*head, _row(videos, f, gap)]) for f in range(n)])
    gif = write_video(stem.with_suffix(".gif"), anim, fps=fps)
    return png, gif


def metric_charts(doc: dict, out: str | Path) -> list[Path]:
    """One chart per metric of a summary document: "all" and each task, a bar per editor."""
    from .report import METRIC_INFO, columns_for, editor_label

    out = Path(out)
    editors = list(doc["editors"])
    tasks = list(dict.fromkeys(t for e in doc["editors"].values() for t in e.get("per_task", {})))
    paths = []
    for m in columns_for(doc["benchmark"], doc["metrics"]):
        series = {editor_label(e): [doc["editors"][e]["metrics"].get(m),
                                    *(doc["editors"][e].get("per_task", {}).get(t, {}).get(m) for t in tasks)]
                  for e in editors}
        title, higher, _ = METRIC_INFO.get(m, (m, True, 3))
        better = "higher" if higher else "lower"
        paths.append(bar_chart(f"{title} by task ({doc['benchmark']}; {better} is better)", ["all", *tasks], series,
                               out / f"{m}.png"))
    return paths
