"""Shared fixtures: everything tiny, seeded and offline."""

import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

import anyio._core._fileio  # noqa: E402,F401
import pytest  # noqa: E402
import torch  # noqa: E402

# anyio imports `open_file` lazily, and pytest rewrites anyio's modules (it is a pytest plugin), so
# the web app's file responses imported and compiled that module in a server thread while the test
# thread compiled too; CPython 3.11.7's AST constructor is not thread-safe there and raised
# "SystemError: AST constructor recursion depth mismatch" once in a full run (test_ui). Importing it
# here, once, in the main thread, takes the compile out of the server thread.

torch.set_num_threads(max(1, min(2, torch.get_num_threads())))


@pytest.fixture(scope="session")
def minilm():
    from evedit.text import MiniLMTextEncoder

    return MiniLMTextEncoder.from_pretrained()


@pytest.fixture(scope="module")
def one_thread():
    """One intra-op thread for a module (``pytestmark = pytest.mark.usefixtures("one_thread")``):
    tiny batches gain nothing from a second thread, and on a shared 2-core machine a second thread
    waiting on a busy core made the editing module ~10x slower."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory, minilm):
    """A tiny saved ShapeWorld edit model (alignment LoRA, task classifier), one per module."""
    from model_utils import save_edit_model

    return save_edit_model(tmp_path_factory.mktemp("edit-model"), minilm)


@pytest.fixture(scope="module")
def pipe(model_dir):
    from evedit.editing import EditPipeline

    return EditPipeline.from_pretrained(model_dir, device="cpu")
