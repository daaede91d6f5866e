"""``evedit ui``: a local web app (Gradio) to edit videos by instruction with the real pipeline.

    from evedit.ui import launch
    server = launch("shapeworld", port=7860)   # serves http://127.0.0.1:7860, returns at once
    ...
    server.close()                             # stops, removes every upload and output

See :mod:`evedit.ui.app` (the page), :mod:`evedit.ui.job` (one edit request),
:mod:`evedit.ui.inputs` (uploads, examples, ShapeWorld clips) and :mod:`evedit.ui.runner`
(sessions, models, cancelling).
"""

from .app import MAX_FILE_SIZE, Server, build_app, launch

__all__ = ["MAX_FILE_SIZE", "Server", "build_app", "launch"]
