"""ShapeWorld renderer: numpy compositing of cached sprites over a (panning) background.

Edges are hard (each pixel is in or out of a shape, tested at its centre), so footprints are
exact: :func:`object_masks` gives the pixels an object covers, and tests compare edits with it.
Every shape and texture mask is computed once per pixel size and cached; a frame is drawn by
slicing, so a 64x64x8 clip costs well under a millisecond.
"""

from __future__ import annotations

from functools import lru_cache

import numpy as np

from evedit.world.config import BOX_COLOR, COLORS
from evedit.world.scene import Background, Obj, Scene, background_offsets, object_offsets, reflect

EDGE_THRESHOLD = 48  # max channel step between neighbours that counts as an edge
WHITE = np.array([255, 255, 255], dtype=np.uint8)
BLACK = np.array([0, 0, 0], dtype=np.uint8)

# Polygons in unit coordinates (u right, v down), inside the square [-1, 1]^2.
_TRIANGLE = ((0.0, -0.95), (0.95, 0.8), (-0.95, 0.8))


def _star_points(inner: float = 0.45) -> tuple[tuple[float, float], ...]:
    """Ten vertices of a five-pointed star, point up, nudged down to centre it in its box."""
    pts = []
    for k in range(10):
        r = 1.0 if k % 2 == 0 else inner
        a = -np.pi / 2 + k * np.pi / 5
        pts.append((float(r * np.cos(a)), float(r * np.sin(a)) + 0.08))
    return tuple(pts)


_STAR = _star_points()


def _inside_polygon(u: np.ndarray, v: np.ndarray, pts: tuple[tuple[float, float], ...]) -> np.ndarray:
    """Even-odd point-in-polygon test, vectorised over the points ``(u, v)``."""
    inside = np.zeros(u.shape, dtype=bool)
    for (x1, y1), (x2, y2) in zip(pts, pts[1:] + pts[:1]):
        crosses = (y1 > v) != (y2 > v)
        with np.errstate(divide="ignore", invalid="ignore"):
            x_cross = x1 + (v - y1) * (x2 - x1) / (y2 - y1)
        inside ^= crosses & (u < x_cross)
    return inside


@lru_cache(maxsize=None)
def shape_mask(shape: str, d: int) -> np.ndarray:
    """Coverage of ``shape`` in a ``d x d`` box: read-only bool ``(d, d)``."""
    c = (np.arange(d) + 0.5) / d * 2.0 - 1.0  # (d,) pixel centres in [-1, 1]
    v, u = np.meshgrid(c, c, indexing="ij")  # (d, d) each; v grows downwards
    if shape == "circle":
        m = u * u + v * v <= 1.0
    elif shape == "square":
        m = np.maximum(np.abs(u), np.abs(v)) <= 0.82
    elif shape == "diamond":
        m = np.abs(u) + np.abs(v) <= 1.0
    elif shape == "triangle":
        m = _inside_polygon(u, v, _TRIANGLE)
    elif shape == "star":
        m = _inside_polygon(u, v, _STAR)
    else:
        raise ValueError(f"unknown shape {shape!r}")
    m.setflags(write=False)
    return m


@lru_cache(maxsize=None)
def texture_mask(texture: str, d: int) -> np.ndarray:
    """Where a texture paints its second shade in a ``d x d`` box: read-only bool ``(d, d)``."""
    i, j = np.indices((d, d))  # (d, d) row and column indices
    if texture == "solid":
        m = np.zeros((d, d), dtype=bool)
    elif texture == "striped":
        width = max(2, round(d / 7))  # 2 px at 14, 3 px at 24: diagonal bands
        m = ((i + j) // width) % 2 == 1
    elif texture == "dotted":
        period = max(4, round(d / 4))
        mid = (period - 1) / 2.0
        m = (i % period - mid) ** 2 + (j % period - mid) ** 2 <= (0.28 * period) ** 2
    else:
        raise ValueError(f"unknown texture {texture!r}")
    m.setflags(write=False)
    return m


def texture_shade(rgb: tuple[int, int, int]) -> np.ndarray:
    """The second shade of a textured object: darker for light colours, lighter for dark ones."""
    c = np.asarray(rgb, dtype=np.float64)
    luma = 0.299 * c[0] + 0.587 * c[1] + 0.114 * c[2]
    shade = c * 0.45 if luma > 110 else c + (255.0 - c) * 0.6
    return np.rint(shade).astype(np.uint8)


def _erode(m: np.ndarray) -> np.ndarray:
    """4-neighbour binary erosion with outside counted as empty."""
    p = np.pad(m, 1)  # (d+2, d+2)
    return m & p[:-2, 1:-1] & p[2:, 1:-1] & p[1:-1, :-2] & p[1:-1, 2:]


@lru_cache(maxsize=None)
def _sprite(shape: str, color: str, texture: str, d: int, style: str) -> tuple[np.ndarray, np.ndarray]:
    """Mask ``(d, d, 1)`` and colours ``(d, d, 3)`` of one object drawn in ``style``.

    Styles: "color" (normal), "outline" (white inside, black border), "on"/"off" (all white /
    all black: the segmentation mask's target and occluders).
    """
    mask = shape_mask(shape, d)
    if style == "color":
        base = np.array(COLORS[color], dtype=np.uint8)
        patch = np.where(texture_mask(texture, d)[..., None], texture_shade(COLORS[color]), base)
    elif style == "outline":
        inner = mask
        for _ in range(max(1, round(d / 12))):  # 1 px border when small, 2 px when large
            inner = _erode(inner)
        patch = np.where((mask & ~inner)[..., None], BLACK, WHITE)
    elif style in ("on", "off"):
        patch = np.broadcast_to(WHITE if style == "on" else BLACK, (d, d, 3))
    else:
        raise ValueError(f"unknown sprite style {style!r}")
    patch = np.ascontiguousarray(patch, dtype=np.uint8)
    return mask[..., None], patch


@lru_cache(maxsize=256)
def _background_base(bg: Background, canvas: int, top: int, left: int, h: int, w: int) -> np.ndarray:
    """Background pattern over rows ``top..top+h`` and cols ``left..left+w``: uint8 ``(h, w, 3)``."""
    ys = np.arange(top, top + h)[:, None]  # (h, 1) global rows
    xs = np.arange(left, left + w)[None, :]  # (1, w) global cols
    if bg.kind == "plain":
        weight = np.zeros((h, w))
    elif bg.kind == "gradient":
        period = 2 * canvas - 2  # diagonal ramp color -> color2 across the canvas, mirrored beyond
        weight = reflect(xs + ys, period) / period
    elif bg.kind == "stripes":
        weight = np.broadcast_to((xs // max(1, canvas // 8)) % 2, (h, w)).astype(np.float64)
    else:  # checker
        cell = max(1, canvas // 8)
        weight = ((ys // cell + xs // cell) % 2).astype(np.float64)
    c1 = np.array(COLORS[bg.color], dtype=np.float64)
    c2 = np.array(COLORS[bg.color2], dtype=np.float64)
    out = np.rint(c1 + weight[..., None] * (c2 - c1)).astype(np.uint8)  # (h, w, 3)
    out.setflags(write=False)
    return out


def render_background(bg: Background, times: np.ndarray, canvas: int) -> np.ndarray:
    """The background alone at each time: uint8 ``(T, H, W, 3)``."""
    offs = background_offsets(bg, times, canvas)  # (T, 2)
    out = np.empty((len(offs), canvas, canvas, 3), dtype=np.uint8)
    if bg.kind == "plain":
        out[:] = COLORS[bg.color]
        return out
    lo = offs.min(axis=0)
    h, w = canvas + offs.max(axis=0) - lo
    base = _background_base(bg, canvas, int(lo[0]), int(lo[1]), int(h), int(w))
    for t, (dy, dx) in enumerate(offs - lo):
        out[t] = base[dy:dy + canvas, dx:dx + canvas]
    return out


def _paint(canvas: np.ndarray, scene: Scene, times: np.ndarray, style_of) -> np.ndarray:
    """Draw the scene's objects, in order, onto ``canvas`` (T, H, W, 3) in place."""
    size = canvas.shape[1]
    for k, obj in enumerate(scene.objects):
        d = obj.diameter(size)
        mask, patch = _sprite(obj.shape, obj.color, obj.texture, d, style_of(k))
        for t, (y, x) in enumerate(object_offsets(obj, times, size)):
            np.copyto(canvas[t, y:y + d, x:x + d], patch, where=mask)
    return canvas


def _times(times: np.ndarray | list[int] | range) -> np.ndarray:
    """Frame times as a 1-D int array."""
    return np.atleast_1d(np.asarray(times, dtype=np.int64))


def render_frames(scene: Scene, times: np.ndarray | list[int] | range, size: int = 64) -> np.ndarray:
    """Render ``scene`` at the given frame times: uint8 ``(T, size, size, 3)``."""
    times = _times(times)
    if scene.render_mode == "outline":
        blank = np.full((len(times), size, size, 3), 255, dtype=np.uint8)
        return _paint(blank, scene, times, lambda k: "outline")
    if scene.render_mode == "segment":
        blank = np.zeros((len(times), size, size, 3), dtype=np.uint8)
        return _paint(blank, scene, times, lambda k: "on" if k == scene.mode_target else "off")
    clip = _paint(render_background(scene.background, times, size), scene, times, lambda k: "color")
    return apply_mode(clip, scene, times)


def render_clip(scene: Scene, frames: int = 8, size: int = 64) -> np.ndarray:
    """Render ``frames`` frames of ``scene``: uint8 ``(frames, size, size, 3)``."""
    return render_frames(scene, np.arange(frames), size)


def render_frame(scene: Scene, t: int, size: int = 64) -> np.ndarray:
    """Render frame ``t`` of ``scene``: uint8 ``(size, size, 3)``."""
    return render_frames(scene, [t], size)[0]


# ----------------------------------------------------------------------------- render modes

#: Modes computed from the normal rendering (the others are drawn directly).
POST_MODES = frozenset({"normal", "grayscale", "invert", "darker", "brighter", "pixelate", "detect", "edges"})


def apply_mode(clip: np.ndarray, scene: Scene, times: np.ndarray | list[int] | range | None = None) -> np.ndarray:
    """Turn the normal rendering ``clip`` (T, H, W, 3) of ``scene`` into its ``render_mode``.

    Returns a new array (``clip`` itself for "normal"); ``times`` are the clip's frame times
    (default ``0..T-1``), needed by "detect" to place the box.
    """
    mode = scene.render_mode
    if mode not in POST_MODES:
        raise ValueError(f"render mode {mode!r} is drawn directly, not applied to a rendering")
    if mode == "normal":
        return clip
    if mode == "grayscale":
        return grayscale(clip)
    if mode == "invert":
        return 255 - clip
    if mode == "darker":
        return clip >> 1  # halfway to black
    if mode == "brighter":
        return 255 - ((255 - clip) >> 1)  # halfway to white
    if mode == "pixelate":
        return pixelate(clip, max(2, clip.shape[1] // 16))
    if mode == "edges":
        return edge_map(clip)
    times = _times(range(len(clip)) if times is None else times)
    out = clip.copy()
    out[box_mask(scene, scene.mode_target, times, clip.shape[1])] = BOX_COLOR
    return out


def grayscale(clip: np.ndarray) -> np.ndarray:
    """ITU-R 601 luma, in integer arithmetic, copied to three channels."""
    c = clip.astype(np.uint16)
    luma = ((77 * c[..., 0] + 150 * c[..., 1] + 29 * c[..., 2] + 128) >> 8).astype(np.uint8)  # (..., H, W)
    return np.repeat(luma[..., None], 3, axis=-1)


def pixelate(clip: np.ndarray, block: int) -> np.ndarray:
    """Replace each ``block x block`` cell by its mean colour (edge cells padded by replication)."""
    t, h, w, _ = clip.shape
    ph, pw = -h % block, -w % block
    x = np.pad(clip, ((0, 0), (0, ph), (0, pw), (0, 0)), mode="edge") if ph or pw else clip
    hb, wb = (h + ph) // block, (w + pw) // block
    n = block * block
    acc = np.uint16 if n * 255 <= np.iinfo(np.uint16).max else np.uint32
    rows = x.reshape(t, hb, block, wb * block * 3).sum(axis=2, dtype=acc)  # (T, hb, wb*block*3)
    sums = rows.reshape(t, hb, wb, block, 3).sum(axis=3, dtype=acc)  # (T, hb, wb, 3); staged: faster
    cells = ((sums + n // 2) // n).astype(np.uint8)  # rounded cell means
    big = np.broadcast_to(cells[:, :, None, :, None], (t, hb, block, wb, block, 3))
    big = big.reshape(t, hb * block, wb * block, 3)  # (T, H', W', 3), a copy
    return np.ascontiguousarray(big[:, :h, :w]) if ph or pw else big


def edge_mask(clip: np.ndarray) -> np.ndarray:
    """Pixels whose right or lower neighbour differs by more than the threshold: bool (T, H, W)."""
    x = clip.astype(np.int16)
    edges = np.zeros(clip.shape[:3], dtype=bool)
    for c in range(3):  # per channel: cheaper than a max over the short channel axis
        xc = x[..., c]  # (T, H, W)
        edges[:, :, :-1] |= np.abs(xc[:, :, 1:] - xc[:, :, :-1]) > EDGE_THRESHOLD
        edges[:, :-1, :] |= np.abs(xc[:, 1:] - xc[:, :-1]) > EDGE_THRESHOLD
    return edges


def edge_map(clip: np.ndarray) -> np.ndarray:
    """Edge map: white edges on black, uint8 (T, H, W, 3)."""
    return np.repeat((edge_mask(clip) * np.uint8(255))[..., None], 3, axis=-1)


# ----------------------------------------------------------------------------- footprints


def object_mask(obj: Obj, frames: int = 8, size: int = 64) -> np.ndarray:
    """Pixels one object covers in each frame (occlusion ignored): bool ``(F, H, W)``."""
    d = obj.diameter(size)
    m = shape_mask(obj.shape, d)
    out = np.zeros((frames, size, size), dtype=bool)
    for t, (y, x) in enumerate(object_offsets(obj, np.arange(frames), size)):
        out[t, y:y + d, x:x + d] = m
    return out


def object_masks(scene: Scene, frames: int = 8, size: int = 64) -> np.ndarray:
    """Full coverage of each object, ignoring occlusion: bool ``(F, n_obj, H, W)``."""
    out = np.zeros((frames, len(scene.objects), size, size), dtype=bool)
    for k, obj in enumerate(scene.objects):
        out[:, k] = object_mask(obj, frames, size)
    return out


def visible_masks(scene: Scene, frames: int = 8, size: int = 64) -> np.ndarray:
    """Coverage of each object minus what later (upper) objects hide: bool ``(F, n_obj, H, W)``."""
    full = object_masks(scene, frames, size)
    covered = np.zeros((frames, size, size), dtype=bool)
    for k in reversed(range(full.shape[1])):
        full[:, k] &= ~covered
        covered |= full[:, k]
    return full


def box_mask(scene: Scene, target: int, times: np.ndarray | list[int] | range, size: int = 64) -> np.ndarray:
    """The 1-px detection box one pixel around object ``target``'s footprint: bool ``(T, H, W)``."""
    times = _times(times)
    obj = scene.objects[target]
    d = obj.diameter(size)
    rows, cols = np.nonzero(shape_mask(obj.shape, d))
    out = np.zeros((len(times), size, size), dtype=bool)
    for t, (y, x) in enumerate(object_offsets(obj, times, size)):
        top, bottom = max(0, y + rows.min() - 1), min(size - 1, y + rows.max() + 1)
        left, right = max(0, x + cols.min() - 1), min(size - 1, x + cols.max() + 1)
        out[t, top, left:right + 1] = out[t, bottom, left:right + 1] = True
        out[t, top:bottom + 1, left] = out[t, top:bottom + 1, right] = True
    return out
