"""ShapeWorld scene graph (objects, background, render mode), motion and scene sampling.

Positions and velocities are canvas fractions, so a scene renders at any size. All randomness
comes from a ``numpy.random.Generator`` passed in; nothing here touches a global RNG.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, replace
from typing import Any

import numpy as np

from evedit.world.config import (
    BACKGROUND_KINDS,
    COLOR_NAMES,
    RENDER_MODES,
    SHAPES,
    SIZE_FRACTIONS,
    SIZES,
    TARGETED_MODES,
    TEXTURES,
    WorldConfig,
    diameter,
)


def _check(value: str, allowed: tuple[str, ...], what: str) -> None:
    """Raise ValueError when ``value`` is not one of ``allowed``."""
    if value not in allowed:
        raise ValueError(f"unknown {what} {value!r}; expected one of {', '.join(allowed)}")


@dataclass(frozen=True)
class Obj:
    """One moving shape. ``x0, y0``: centre at frame 0; ``vx, vy``: velocity per frame (fractions)."""

    shape: str
    color: str
    texture: str
    size: str
    x0: float
    y0: float
    vx: float
    vy: float
    across: float | None = None  # diameter as a canvas fraction, where its world's sizes are not the preset's

    def __post_init__(self) -> None:
        """Validate the vocabulary words."""
        _check(self.shape, SHAPES, "shape")
        _check(self.color, COLOR_NAMES, "colour")
        _check(self.texture, TEXTURES, "texture")
        _check(self.size, SIZES, "size")

    def diameter(self, canvas: int) -> int:
        """This object's diameter in pixels at a canvas side."""
        return diameter(self.size, canvas, self.across)

    @property
    def name(self) -> str:
        """Colour and shape, e.g. ``"red circle"``: unique within a scene, so it names the object."""
        return f"{self.color} {self.shape}"

    def to_dict(self) -> dict[str, Any]:
        """JSON-able dict (``across`` only where set: a preset-world scene's dict is as before)."""
        data = asdict(self)
        if self.across is None:
            del data["across"]
        return data

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Obj:
        """Inverse of :meth:`to_dict`."""
        return cls(**data)


@dataclass(frozen=True)
class Background:
    """Backdrop: ``kind`` pattern in ``color`` (and ``color2``), panning by ``pan`` (dx, dy) per frame."""

    kind: str
    color: str
    color2: str
    pan: tuple[float, float] = (0.0, 0.0)

    def __post_init__(self) -> None:
        """Validate and normalise (a plain background has one colour, so color2 == color)."""
        _check(self.kind, BACKGROUND_KINDS, "background kind")
        _check(self.color, COLOR_NAMES, "colour")
        _check(self.color2, COLOR_NAMES, "colour")
        if self.kind == "plain" and self.color2 != self.color:
            object.__setattr__(self, "color2", self.color)
        object.__setattr__(self, "pan", (float(self.pan[0]), float(self.pan[1])))

    @property
    def colors(self) -> frozenset[str]:
        """The palette colours the background shows."""
        return frozenset({self.color, self.color2})

    def to_dict(self) -> dict[str, Any]:
        """JSON-able dict (pan as a list)."""
        return {"kind": self.kind, "color": self.color, "color2": self.color2, "pan": list(self.pan)}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Background:
        """Inverse of :meth:`to_dict`."""
        return cls(data["kind"], data["color"], data["color2"], tuple(data.get("pan", (0.0, 0.0))))


@dataclass(frozen=True)
class Scene:
    """Objects drawn in order (later on top) over a background, in a render mode."""

    objects: tuple[Obj, ...]
    background: Background
    render_mode: str = "normal"
    mode_target: int | None = None  # object index for "segment" and "detect"

    def __post_init__(self) -> None:
        """Validate the mode and its target; store objects as a tuple."""
        object.__setattr__(self, "objects", tuple(self.objects))
        _check(self.render_mode, RENDER_MODES, "render mode")
        if self.render_mode in TARGETED_MODES:
            if self.mode_target is None or not 0 <= self.mode_target < len(self.objects):
                raise ValueError(f"render mode {self.render_mode!r} needs a valid mode_target")

    def with_mode(self, mode: str, target: int | None = None) -> Scene:
        """The same scene drawn in another render mode."""
        return replace(self, render_mode=mode, mode_target=target)

    def to_dict(self) -> dict[str, Any]:
        """JSON-able dict."""
        return {
            "objects": [o.to_dict() for o in self.objects],
            "background": self.background.to_dict(),
            "render_mode": self.render_mode,
            "mode_target": self.mode_target,
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Scene:
        """Inverse of :meth:`to_dict`."""
        return cls(
            tuple(Obj.from_dict(o) for o in data["objects"]),
            Background.from_dict(data["background"]),
            data.get("render_mode", "normal"),
            data.get("mode_target"),
        )


# ----------------------------------------------------------------------------- motion


def reflect(u: np.ndarray, length: float) -> np.ndarray:
    """Fold ``u`` into ``[0, length]`` as a ball bouncing between two walls (triangle wave)."""
    m = np.mod(u, 2.0 * length)
    return np.where(m <= length, m, 2.0 * length - m)


def object_offsets(obj: Obj, times: np.ndarray, canvas: int) -> np.ndarray:
    """Top-left pixel ``(row, col)`` of the object's box at each time: int ``(T, 2)``.

    The box (side :func:`diameter`) always lies inside the canvas: the centre bounces off the
    borders, so the object never leaves the frame.
    """
    d = obj.diameter(canvas)
    span = canvas - d
    start = np.array([obj.y0, obj.x0]) * canvas - d / 2.0  # (2,) top-left at t=0, px
    vel = np.array([obj.vy, obj.vx]) * canvas  # (2,) px per frame
    raw = start[None, :] + np.asarray(times, dtype=np.float64)[:, None] * vel[None, :]  # (T, 2)
    return np.clip(np.rint(reflect(raw, span)).astype(np.int64), 0, span)


def background_offsets(bg: Background, times: np.ndarray, canvas: int) -> np.ndarray:
    """Pan offset ``(row, col)`` in pixels at each time: int ``(T, 2)``."""
    pan = np.array([bg.pan[1], bg.pan[0]]) * canvas  # (2,) px per frame as (dy, dx)
    return np.rint(np.asarray(times, dtype=np.float64)[:, None] * pan[None, :]).astype(np.int64)


# ----------------------------------------------------------------------------- sampling


def _pick(rng: np.random.Generator, options: list[str] | tuple[str, ...]) -> str:
    """One element of ``options``, uniformly."""
    return options[int(rng.integers(len(options)))]


def sample_object(
    rng: np.random.Generator,
    config: WorldConfig,
    taken: set[tuple[str, str]] | frozenset[tuple[str, str]] = frozenset(),
    banned_colors: frozenset[str] | set[str] = frozenset(),
    shape: str | None = None,
    color: str | None = None,
) -> Obj:
    """Draw an object whose (colour, shape) is not in ``taken`` and colour not in ``banned_colors``.

    ``shape`` / ``color`` force those attributes (used to build held-out compositions).
    """
    for _ in range(1000):
        s = shape if shape is not None else _pick(rng, SHAPES)
        c = color if color is not None else _pick(rng, COLOR_NAMES)
        if (c, s) not in taken and c not in banned_colors:
            break
    else:
        raise ValueError("no free (colour, shape) combination left for a new object")
    size = _pick(rng, SIZES)
    across = config.size_fraction(size)
    motion = sample_motion(rng, config, across)  # before the texture: every seed's scene as before
    return Obj(
        shape=s, color=c, texture=_pick(rng, TEXTURES), size=size, **motion,
        across=None if across == SIZE_FRACTIONS[size] else across,
    )


def sample_motion(
    rng: np.random.Generator, config: WorldConfig, across: float, start: tuple[float, float] | None = None,
) -> dict[str, float]:
    """An object's frame-0 centre ``x0, y0`` (kept inside the frame for its diameter ``across``; or
    ``start`` as given, drawing nothing) and velocity ``vx, vy``, drawn in this order, rounded as
    :class:`Obj` stores them. ``sample_object`` draws an object's motion with it."""
    if start is None:
        r = across / 2.0
        start = rng.uniform(r, 1.0 - r, size=2)
    speed = rng.uniform(config.speed_min, config.speed_max)
    angle = rng.uniform(0.0, 2.0 * np.pi)
    x0, y0 = start
    return dict(x0=round(float(x0), 4), y0=round(float(y0), 4),
                vx=round(float(speed * np.cos(angle)), 4), vy=round(float(speed * np.sin(angle)), 4))


def sample_background(
    rng: np.random.Generator,
    config: WorldConfig,
    banned_colors: frozenset[str] | set[str] = frozenset(),
    pan: tuple[float, float] | None = None,
) -> Background:
    """Draw a background avoiding ``banned_colors``; ``pan`` fixes the pan instead of drawing it."""
    allowed = [c for c in COLOR_NAMES if c not in banned_colors]
    kind = _pick(rng, BACKGROUND_KINDS)
    color = _pick(rng, allowed)
    color2 = _pick(rng, [c for c in allowed if c != color])
    if pan is None:
        pan = (0.0, 0.0)
        if kind != "plain" and rng.random() < config.pan_prob:
            speed = rng.uniform(config.pan_speed_min, config.pan_speed_max)
            angle = rng.uniform(0.0, 2.0 * np.pi)
            pan = (round(float(speed * np.cos(angle)), 4), round(float(speed * np.sin(angle)), 4))
    return Background(kind, color, color2, pan)


def sample_scene(
    rng: np.random.Generator,
    config: WorldConfig,
    n_objects: int,
    forced: dict[int, tuple[str | None, str | None]] | None = None,
) -> Scene:
    """Draw ``n_objects`` objects with unique (colour, shape), then a background in other colours.

    ``forced`` maps an object index to a ``(shape, colour)`` pair (either may be None) to impose.
    """
    forced = forced or {}
    objects: dict[int, Obj] = {}
    taken: set[tuple[str, str]] = set()
    for k in sorted(range(n_objects), key=lambda k: k not in forced):  # forced ones first: never blocked
        shape, color = forced.get(k, (None, None))
        objects[k] = sample_object(rng, config, taken, shape=shape, color=color)
        taken.add((objects[k].color, objects[k].shape))
    background = sample_background(rng, config, banned_colors={o.color for o in objects.values()})
    return Scene(tuple(objects[k] for k in range(n_objects)), background)
