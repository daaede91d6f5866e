"""ShapeWorld: a procedural world of moving coloured shapes, with exact ground truth for edits.

Scenes are small frozen dataclasses (:class:`Scene`, :class:`Obj`, :class:`Background`); an
edit is a change of the scene graph (:func:`make_edit`), so the edited clip renders exactly.
:func:`make_example` gives the example of a seed; the dataset views serve the training stages.
"""

from evedit.world.captions import background_phrase, caption, object_phrase
from evedit.world.config import (
    BACKGROUND_KINDS,
    COLOR_NAMES,
    COLORS,
    RENDER_MODES,
    SHAPES,
    SIZES,
    TEXTURES,
    WorldConfig,
    diameter,
)
from evedit.world.datasets import (
    AlignmentDataset,
    ClipCaptionDataset,
    EditTripletDataset,
    EvalDataset,
    ImageCaptionDataset,
    WorldDataset,
    clip_tensor,
    image_tensor,
)
from evedit.world.edits import (
    CATEGORIES,
    NON_VISION_TASKS,
    TASK_CATEGORIES,
    TASKS,
    Edit,
    make_edit,
    task_label,
)
from evedit.world.examples import (
    HELDOUT_PAIRS,
    HELDOUT_TASK_SHAPES,
    SPLITS,
    Example,
    edit_footprint,
    heldout_hits,
    make_example,
    split_of,
)
from evedit.world.render import (
    apply_mode,
    box_mask,
    object_mask,
    object_masks,
    render_clip,
    render_frame,
    render_frames,
    visible_masks,
)
from evedit.world.scene import Background, Obj, Scene, object_offsets, sample_scene

__all__ = [
    "AlignmentDataset", "BACKGROUND_KINDS", "Background", "CATEGORIES", "COLORS", "COLOR_NAMES",
    "ClipCaptionDataset", "Edit", "EditTripletDataset", "EvalDataset", "Example", "HELDOUT_PAIRS",
    "HELDOUT_TASK_SHAPES", "ImageCaptionDataset", "NON_VISION_TASKS", "Obj", "RENDER_MODES", "SHAPES",
    "SIZES", "SPLITS", "Scene", "TASKS", "TASK_CATEGORIES", "TEXTURES", "WorldConfig", "WorldDataset",
    "apply_mode", "background_phrase", "box_mask", "caption", "clip_tensor", "diameter", "edit_footprint",
    "heldout_hits", "image_tensor", "make_edit", "make_example", "object_mask", "object_masks",
    "object_offsets", "object_phrase", "render_clip", "render_frame", "render_frames", "sample_scene",
    "split_of", "task_label", "visible_masks",
]
