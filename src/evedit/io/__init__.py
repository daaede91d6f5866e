"""Video and image files in and out.

Arrays at this boundary are ``uint8`` RGB: videos ``(F, H, W, 3)``, images ``(H, W, 3)``.
Every problem with a user's file is raised as :class:`evedit.errors.EveditError`
naming the file.

* :func:`read_video` reads ``.mp4 .webm .mov .mkv .avi .gif``, a still image
  (``.png .jpg .jpeg .bmp .webp``, one frame at 8 fps) or a folder of numbered images
  (natural order, fps from an optional ``fps.txt``, else 8).
* :func:`write_video` writes ``.mp4 .webm .mkv .gif`` or a folder of PNG frames,
  atomically.
* :func:`read_image` / :func:`write_image` handle single images.

Decisions worth knowing: transparency is composited over white; grayscale and
palette images become RGB; odd-sized ``.mp4`` are padded by one edge row/column and
cropped back on reading (size kept in the ``comment`` tag); GIF timing is exact to a
hundredth of a second over the whole clip and fps above 50 is refused; a stream whose
frame size changes midway is refused; rotated phone video (display matrix) is returned upright.
:mod:`evedit.io.audio` carries an input's sound into a written video.
"""

from evedit.io._common import (
    DEFAULT_FPS,
    FPS_FILE,
    IMAGE_EXTENSIONS,
    IMAGE_OUTPUT_EXTENSIONS,
    SUPPORTED_INPUT_EXTENSIONS,
    SUPPORTED_OUTPUT_EXTENSIONS,
    VIDEO_EXTENSIONS,
)
from evedit.io.images import read_image, write_image
from evedit.io.video import Video, VideoInfo, probe_video, read_video, write_video

__all__ = [
    "DEFAULT_FPS",
    "FPS_FILE",
    "IMAGE_EXTENSIONS",
    "IMAGE_OUTPUT_EXTENSIONS",
    "SUPPORTED_INPUT_EXTENSIONS",
    "SUPPORTED_OUTPUT_EXTENSIONS",
    "VIDEO_EXTENSIONS",
    "Video",
    "VideoInfo",
    "probe_video",
    "read_image",
    "read_video",
    "write_image",
    "write_video",
]
