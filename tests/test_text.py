"""Text encoders: MiniLM against sentence-transformers' own pooling, padding, truncation, errors."""

import pytest
import torch

from evedit.errors import EveditError
from evedit.text import CLIPTextEncoder, MiniLMTextEncoder, minilm_folder

SENTENCES = ["a large red circle and a small striped blue square on a plain green background",
             "make the circle blue", ""]


def test_minilm_pooled_matches_sentence_transformers(minilm):
    from sentence_transformers import SentenceTransformer

    reference = SentenceTransformer(str(minilm_folder()), device="cpu")
    want = reference.encode(SENTENCES, convert_to_tensor=True)
    got = minilm(SENTENCES)
    assert torch.allclose(got.pooled, want, atol=1e-5)
    assert got.hidden_states.shape == (3, minilm.max_length, 384)
    assert torch.allclose(got.pooled.norm(dim=-1), torch.ones(3), atol=1e-5)
    assert all(not p.requires_grad for p in minilm.parameters())


def test_similar_sentences_are_closer(minilm):
    e = minilm(["make the red circle blue", "turn the red circle blue", "remove the green square"]).pooled
    assert e[0] @ e[1] > e[0] @ e[2]


def test_long_text_is_truncated_with_a_warning(minilm):
    long = " ".join(["red circle"] * 40)
    assert minilm.n_tokens(long) > minilm.max_length
    with pytest.warns(UserWarning, match="truncated"):
        out = minilm([long])
    assert out.hidden_states.shape[1] == minilm.max_length


def test_bad_folders_are_refused(tmp_path):
    with pytest.raises(EveditError, match="no config.json"):
        MiniLMTextEncoder.from_pretrained(tmp_path)
    (tmp_path / "config.json").write_text("{}")
    (tmp_path / "pytorch_model.bin").write_bytes(b"\x80\x04")
    with pytest.raises(EveditError, match="pickle"):
        CLIPTextEncoder.from_pretrained(tmp_path)
