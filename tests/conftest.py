"""Shared fixtures: everything tiny, seeded and offline."""

import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

import pytest  # noqa: E402
import torch  # noqa: E402

torch.set_num_threads(max(1, min(2, torch.get_num_threads())))


@pytest.fixture(scope="session")
def minilm():
    from evedit.text import MiniLMTextEncoder

    return MiniLMTextEncoder.from_pretrained()
