"""The Gradio page of ``evedit ui``: inputs, the Edit and Cancel buttons, outputs, and its server.

:func:`build_app` lays out the page and wires it to :func:`~evedit.ui.job.run_request`;
:func:`launch` serves it. The page opens on the bundled ShapeWorld clip and its instruction, so
one click on Edit edits it. Edits are queued and run one at a time; the progress bar follows the
pipeline's own step bar (``gr.Progress(track_tqdm=True)``); Cancel stops the running edit between
two steps. The public API names are ``/edit`` and ``/render_world``.
"""

from __future__ import annotations

import os
import tempfile
from dataclasses import dataclass, fields
from pathlib import Path

import gradio as gr

from ..editing import EDITORS
from ..editing.options import REGIONS
from ..errors import EveditError
from ..world import TASKS
from .inputs import SOURCES, bundled_clip, random_world_seed, world_clip, write_preview
from .job import MODEL_REGION, EditRequest, run_request
from .runner import Models, Sessions

MAX_FILE_SIZE = "200mb"
ANY_TASK = "any"
NO_COMPARE = "none"
FONTS = ["ui-sans-serif", "system-ui", "sans-serif"]  # no web fonts: the page works offline
CSS = "video { image-rendering: pixelated; }"  # small clips (ShapeWorld: 64 px) shown large and sharp
# The page's inputs, in the order of the /edit API (EditRequest fields).
EDIT_FIELDS = [f.name for f in fields(EditRequest)]


@dataclass
class Server:
    """A running app: its address, and :meth:`close` to stop it and remove its temporary folder."""

    blocks: gr.Blocks
    url: str
    sessions: Sessions
    models: Models

    def close(self) -> None:
        """Stop serving and delete every upload and output."""
        try:
            self.blocks.close()
        finally:
            self.sessions.close()


def _session(request: gr.Request | None) -> str:
    return getattr(request, "session_hash", None) or "anonymous"


def make_handlers(sessions: Sessions, models: Models):
    """The page's event functions, bound to this app's sessions and models."""

    def edit(source, upload, world_task, world_seed, instruction, editor, task, steps, guidance, seed,
             random_seed, max_frames, stride, start_time, window, overlap, compare_editor, model, lora_scale=None, region=None,
             noise_share=None, request: gr.Request = None, progress=gr.Progress(track_tqdm=True)):
        """The /edit API: the page's inputs in :data:`EDIT_FIELDS` order; outputs as the page shows them."""
        req = EditRequest(source, upload, world_task, world_seed, instruction, editor, task, steps, guidance,
                          seed, random_seed, max_frames, stride, start_time, window, overlap, compare_editor, model,
                          lora_scale, region, noise_share)
        req.world_task = None if req.world_task in (None, ANY_TASK) else req.world_task
        req.compare_editor = None if req.compare_editor in (None, NO_COMPARE) else req.compare_editor
        session = _session(request)
        flag = sessions.flag(session)
        flag.clear()
        workdir = sessions.new_request(session)
        try:
            out = run_request(req, models, workdir, flag, progress)
        except EveditError as exc:
            _forget(sessions, session, workdir, req.upload)
            raise gr.Error(str(exc), print_exception=False) from None
        except Exception as exc:  # noqa: BLE001 - the page shows one sentence; the server keeps serving
            _forget(sessions, session, workdir, req.upload)
            raise gr.Error(f"The edit failed ({type(exc).__name__}: {exc}).", print_exception=False) from None
        return out.edit, out.comparison, out.task, out.timings, out.status, out.edit

    def cancel(request: gr.Request = None):
        sessions.flag(_session(request)).set()
        return "Cancelling: the edit stops after the current step."

    def render(task, request: gr.Request = None):
        """A new random ShapeWorld clip of ``task``: seed, preview, ground truth, instruction."""
        seed = random_world_seed()
        try:
            clip = world_clip(None if task in (None, ANY_TASK) else task, seed)
        except EveditError as exc:
            raise gr.Error(str(exc), print_exception=False) from None
        folder = sessions.new_request(_session(request))
        truth = write_preview(clip, folder, "input.mp4"), _truth_preview(clip, folder)
        return SOURCES[2], seed, truth[0], truth[1], clip.instruction

    def show_bundled(source, request: gr.Request = None):
        if source != SOURCES[1]:
            return gr.skip(), gr.skip(), gr.skip()
        clip = bundled_clip()
        folder = sessions.new_request(_session(request))
        return write_preview(clip, folder), _truth_preview(clip, folder), clip.instruction

    def end(request: gr.Request = None):
        sessions.end(_session(request))

    return edit, cancel, render, show_bundled, end


def _truth_preview(clip, folder: Path) -> str | None:
    from ..io import write_video

    return None if clip.truth is None else str(write_video(folder / "ground_truth.mp4", clip.truth, clip.fps))


def _forget(sessions: Sessions, session: str, workdir: Path, upload: str | None) -> None:
    """A failed request leaves nothing: its folder and its upload are removed."""
    sessions.drop_request(session, workdir)
    if upload and Path(upload).resolve().is_relative_to(sessions.root.resolve()):
        Path(upload).unlink(missing_ok=True)
        try:
            Path(upload).parent.rmdir()  # gradio's per-upload folder, when now empty
        except OSError:
            pass


def _input_column(model: str) -> dict:
    """The left column: the input, the instruction and the settings; returns the components."""
    c = {}
    c["source"] = gr.Radio(list(SOURCES), value=SOURCES[1], label="Input")
    c["upload"] = gr.File(label="Upload a video (mp4, webm, mov, mkv, gif) or a zip of numbered frames",
                          type="filepath", elem_id="upload")  # types checked by the app: one sentence
    with gr.Row():
        c["world_task"] = gr.Dropdown([ANY_TASK, *TASKS], value=ANY_TASK, label="ShapeWorld task")
        c["world_seed"] = gr.Number(None, precision=0, label="ShapeWorld seed")
        c["render"] = gr.Button("New ShapeWorld clip")
    with gr.Row():
        c["preview"] = gr.Video(label="Input", interactive=False)
        c["truth"] = gr.Video(label="Ground truth (ShapeWorld)", interactive=False)
    c["instruction"] = gr.Textbox(label="Instruction", max_lines=3, elem_id="instruction")
    with gr.Row():
        c["editor"] = gr.Dropdown(list(EDITORS), value="eve", label="Editor")
        c["task"] = gr.Dropdown(["auto", *TASKS], value="auto", label="Task (auto: the task classifier)")
    with gr.Row():
        c["steps"] = gr.Number(0, precision=0, label="Steps (0: the editor's default)")
        c["guidance"] = gr.Number(0, label="Guidance (0: the editor's default)")
        c["seed"] = gr.Number(0, precision=0, label="Seed")
        c["random_seed"] = gr.Checkbox(False, label="Random seed")
    with gr.Accordion("Advanced", open=False):
        with gr.Row():
            c["max_frames"] = gr.Number(0, precision=0, label="Max frames (0: all)")
            c["stride"] = gr.Number(1, precision=0, label="Stride")
            c["start_time"] = gr.Number(0.0, label="Start time (s)")
        with gr.Row():
            c["window"] = gr.Number(0, precision=0, label="Window (0: the model's)")
            c["overlap"] = gr.Number(1, precision=0, label="Overlap (frames shared by windows)")
        with gr.Row():
            c["compare_editor"] = gr.Dropdown([NO_COMPARE, *EDITORS], value=NO_COMPARE,
                                              label="Compare editors: also run")
            c["model"] = gr.Textbox(model, label="Model folder or preset")
            c["lora_scale"] = gr.Number(None, label="EVE LoRA strength (empty: the model's)")
            c["region"] = gr.Dropdown([MODEL_REGION, *REGIONS], value=MODEL_REGION,
                                      label="Region (auto: only where the instruction acts)")
            c["noise_share"] = gr.Number(None, label="Noise shared by all frames, 0-1 (empty: the model's)")
    with gr.Row():
        c["edit"] = gr.Button("Edit", variant="primary", elem_id="edit-button")
        c["cancel"] = gr.Button("Cancel", variant="stop")
    return c


def _output_column() -> dict:
    o = {}
    o["video"] = gr.Video(label="Edited video", interactive=False, elem_id="edited")
    o["comparison"] = gr.Video(label="Side by side", interactive=False, elem_id="comparison")
    o["task"] = gr.Textbox(label="Task used", interactive=False)
    o["timings"] = gr.Textbox(label="Timings", interactive=False, lines=3)
    o["status"] = gr.Textbox(label="Status", interactive=False)
    o["download"] = gr.DownloadButton("Download the edit")
    return o


def build_app(sessions: Sessions, models: Models, model: str = "shapeworld") -> gr.Blocks:
    """The page; the caller launches it (see :func:`launch`)."""
    edit, cancel, render, show_bundled, end = make_handlers(sessions, models)
    with gr.Blocks(title="evedit: edit videos by instruction", analytics_enabled=False,
                   delete_cache=(600, 3600)) as blocks:
        gr.Markdown("## evedit: edit a video by an instruction (EVE, Factorized Diffusion Distillation)")
        with gr.Row():
            with gr.Column():
                c = _input_column(model)
            with gr.Column():
                o = _output_column()
        inputs = [c[name] for name in EDIT_FIELDS]
        outputs = [o["video"], o["comparison"], o["task"], o["timings"], o["status"], o["download"]]
        job = c["edit"].click(edit, inputs, outputs, api_name="edit", concurrency_id="edit",
                              concurrency_limit=1)
        c["cancel"].click(cancel, None, o["status"], cancels=[job], concurrency_limit=None, api_name="cancel")
        c["render"].click(render, c["world_task"],
                          [c["source"], c["world_seed"], c["preview"], c["truth"], c["instruction"]],
                          api_name="render_world", concurrency_limit=None)
        preview = [c["preview"], c["truth"], c["instruction"]]
        c["source"].change(show_bundled, c["source"], preview, api_name=False, concurrency_limit=None)
        c["upload"].upload(lambda: (SOURCES[0], None, None), None, [c["source"], c["preview"], c["truth"]],
                           api_name=False, concurrency_limit=None)
        blocks.load(show_bundled, c["source"], preview, api_name=False, concurrency_limit=None)
        blocks.unload(end)
    return blocks


def launch(model: str = "shapeworld", host: str = "127.0.0.1", port: int = 7860, *,
           max_file_size: str | int = MAX_FILE_SIZE, prevent_thread_lock: bool = True,
           preload: bool = True, quiet: bool = True, device: str = "auto") -> Server:
    """Serve the app at ``host:port``; every upload and output lives in one temporary folder.

    ``preload`` loads the model first (a model that does not load is an error here). With
    ``prevent_thread_lock=False`` this blocks until Ctrl-C and then cleans up.
    """
    root = Path(tempfile.mkdtemp(prefix="evedit-ui-"))
    os.environ["GRADIO_TEMP_DIR"] = str(root / "cache")  # gradio's uploads and served copies
    os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")
    sessions, models = Sessions(root), Models(device)
    try:
        if preload:
            models.get(model)
        blocks = build_app(sessions, models, model)
        blocks.queue(default_concurrency_limit=1, max_size=32)
        theme = gr.themes.Default(font=FONTS, font_mono=["ui-monospace", "monospace"])
        _, url, _ = blocks.launch(server_name=host, server_port=port, prevent_thread_lock=True,
                                  max_file_size=max_file_size, allowed_paths=[], show_error=True,
                                  quiet=quiet, ssr_mode=False, share=False, theme=theme, css=CSS,
                                  footer_links=["api"])
    except OSError as exc:
        sessions.close()
        raise EveditError(f"Cannot serve on {host}:{port} ({exc}).") from exc
    except BaseException:
        sessions.close()
        raise
    server = Server(blocks, url, sessions, models)
    if not prevent_thread_lock:
        try:
            blocks.block_thread()
        finally:
            server.close()
    return server
