"""ShapeWorld vocabulary (shapes, colours, textures, sizes, backgrounds) and :class:`WorldConfig`.

Geometry is stored in canvas fractions so that one scene renders at any canvas size; the
constants here say how fractions become pixels.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, fields
from typing import Any

from evedit.errors import EveditError

SHAPES: tuple[str, ...] = ("circle", "square", "triangle", "star", "diamond")

#: Named palette. Every pair differs by >= 80 in some channel, so objects always stand out
#: from each other and from the background, and the edge detector (threshold 48) sees them.
COLORS: dict[str, tuple[int, int, int]] = {
    "red": (220, 30, 30),
    "orange": (255, 140, 0),
    "yellow": (245, 220, 20),
    "green": (30, 160, 50),
    "cyan": (0, 210, 220),
    "blue": (30, 70, 220),
    "purple": (130, 40, 180),
    "pink": (255, 120, 190),
    "white": (250, 250, 250),
    "black": (15, 15, 15),
    "gray": (128, 128, 128),
    "brown": (130, 80, 30),
}
COLOR_NAMES: tuple[str, ...] = tuple(COLORS)

TEXTURES: tuple[str, ...] = ("solid", "striped", "dotted")
SIZES: tuple[str, ...] = ("small", "large")
#: Object diameter as a fraction of the canvas side: 14 px and 24 px at 64 px.
SIZE_FRACTIONS: dict[str, float] = {"small": 14 / 64, "large": 24 / 64}
BACKGROUND_KINDS: tuple[str, ...] = ("plain", "gradient", "stripes", "checker")

#: How a scene is drawn. "normal" is the plain rendering; the others are global, style and
#: vision edits expressed in the scene graph so that their ground truth renders exactly.
RENDER_MODES: tuple[str, ...] = (
    "normal", "grayscale", "invert", "darker", "brighter",  # global
    "outline", "pixelate",  # style
    "segment", "detect", "edges",  # vision
)
#: Modes that need ``Scene.mode_target`` (the object they concern).
TARGETED_MODES: frozenset[str] = frozenset({"segment", "detect"})
#: Colour of the detection box; magenta is in no palette colour's neighbourhood.
BOX_COLOR: tuple[int, int, int] = (255, 0, 255)


@dataclass(frozen=True)
class WorldConfig:
    """How ShapeWorld samples and renders scenes; every default is the embedded preset's."""

    size: int = 64  # canvas side in px: the tiny codec maps 64x64 RGB to 16x16x4 latents
    frames: int = 8  # clip length: enough motion for temporal layers at CPU cost
    min_objects: int = 1  # a scene without an object has nothing to edit locally
    max_objects: int = 3  # more than three 14-24 px objects crowd a 64 px canvas
    speed_min: float = 0.02  # canvas fractions per frame: >= 1.3 px/frame at 64, visible motion
    speed_max: float = 0.06  # <= 3.8 px/frame at 64: smooth for an 8-frame window
    pan_prob: float = 0.5  # share of patterned backgrounds that pan (a plain one cannot show it)
    pan_speed_min: float = 0.015  # canvas fractions per frame: ~1 px/frame at 64
    pan_speed_max: float = 0.04  # ~2.5 px/frame at 64, slower than most objects
    # Diameters of "small" and "large" objects in px at a 64 px canvas (scaled with ``size``);
    # None: the preset's, SIZE_FRACTIONS (14 and 24 px). A world with other sizes records them in
    # every object it samples (``Obj.across``), so its scenes render alike anywhere.
    small_px: float | None = None
    large_px: float | None = None

    def __post_init__(self) -> None:
        """Reject settings that cannot render (one sentence each, as the CLI prints them)."""
        if self.size < 16:
            raise EveditError(f"ShapeWorld needs a canvas of at least 16 px, got size={self.size}.")
        if self.frames < 1:
            raise EveditError(f"ShapeWorld clips need at least one frame, got frames={self.frames}.")
        if not 1 <= self.min_objects <= self.max_objects <= 6:
            raise EveditError(
                "ShapeWorld needs 1 <= min_objects <= max_objects <= 6, "
                f"got {self.min_objects} and {self.max_objects}."
            )
        if not 0 < self.speed_min <= self.speed_max or not 0 <= self.pan_prob <= 1:
            raise EveditError("ShapeWorld speeds must be positive and ordered, and pan_prob in [0, 1].")
        small, large = (self.size_fraction(w) * 64 for w in SIZES)
        if not 3 <= small <= large <= 32:
            raise EveditError(f"ShapeWorld object diameters need 3 <= small <= large <= 32 px (at 64 px), got {small:g} and {large:g}.")

    def size_fraction(self, size_name: str) -> float:
        """Diameter of a ``size_name`` object as a fraction of the canvas side in this world."""
        px = {"small": self.small_px, "large": self.large_px}[size_name]
        return SIZE_FRACTIONS[size_name] if px is None else px / 64

    def to_dict(self) -> dict[str, Any]:
        """JSON-able dict of the settings."""
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> WorldConfig:
        """Inverse of :meth:`to_dict`; unknown keys are an error, missing ones take defaults."""
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise EveditError(f"Unknown ShapeWorld setting(s): {', '.join(unknown)}.")
        return cls(**data)


def diameter(size_name: str, canvas: int, fraction: float | None = None) -> int:
    """Object diameter in pixels for a size word at a canvas side (14 or 24 at 64), or for an
    object's own ``fraction`` of the canvas where its world sets one (``Obj.across``)."""
    return max(3, int(round((SIZE_FRACTIONS[size_name] if fraction is None else fraction) * canvas)))
