import numpy as np
import pytest
import torch

from common.model import TwoTowerModel

torch.set_num_threads(1)


@pytest.mark.parametrize("encoder", ["avg", "gru"])
@pytest.mark.parametrize("lex_dim", [0, 8])
def test_shapes_unit_length_and_padding_invariance(encoder, lex_dim):
    torch.manual_seed(0)
    m = TwoTowerModel(50, 12, {"encoder": encoder, "out_dim": 16, "lex_dim": lex_dim, "gru_hidden": 8},
                      embeddings=np.random.default_rng(0).normal(size=(50, 12)).astype(np.float32))
    m.eval()
    ids = torch.tensor([[5, 6, 7, 0, 0], [9, 0, 0, 0, 0]])
    lens = torch.tensor([3, 1])
    q = m.encode_query(ids, lens)
    p = m.encode_passage(ids, lens)
    assert q.shape == (2, 16 + lex_dim) and p.shape == (2, 16 + lex_dim)
    assert torch.allclose(q.norm(dim=1), torch.ones(2), atol=1e-5)
    # more padding, or garbage beyond the true length, changes nothing
    wide = torch.cat([ids, torch.zeros(2, 7, dtype=torch.long)], dim=1)
    garbage = ids.clone()
    garbage[0, 3:] = 11
    garbage[1, 1:] = 12
    for other in (wide, garbage):
        assert torch.allclose(m.encode_passage(other, lens), p, atol=1e-5)
    # and a row encodes the same alone as in a batch
    assert torch.allclose(m.encode_passage(ids[1:, :1], lens[1:]), p[1:], atol=1e-5)


def test_separate_towers_differ_and_checkpoint_round_trip():
    m = TwoTowerModel(30, 8, {"shared": False, "out_dim": 8, "lex_dim": 4})
    assert m.query_tower is not m.passage_tower
    ck = m.checkpoint(vocab_fingerprint="x")
    m2 = TwoTowerModel.from_checkpoint(ck)
    ids, lens = torch.tensor([[3, 4, 5]]), torch.tensor([3])
    m.eval()
    assert torch.allclose(m.encode_query(ids, lens), m2.encode_query(ids, lens))
    assert m2.fingerprint() == ck["fingerprint"]


def test_frozen_word_table_stays_out_of_the_checkpoint(tmp_path):
    """A checkpoint names its frozen word table (data/embeddings.npy) instead of holding 400k rows;
    loading it needs that table, and gives the same model."""
    emb = np.random.default_rng(1).normal(size=(30, 8)).astype(np.float32)
    np.save(tmp_path / "e.npy", emb)
    mapped = np.load(tmp_path / "e.npy", mmap_mode="c")
    head = np.linalg.qr(np.random.default_rng(2).normal(size=(8, 4)))[0].T
    m = TwoTowerModel(30, 8, {"out_dim": 4, "lex_dim": 0, "embeddings": "fp1"}, embeddings=mapped, head_init=head)
    assert torch.allclose(m.query_tower.head.weight, torch.as_tensor(head, dtype=torch.float32))
    ck = m.checkpoint()
    assert not any(k.endswith("emb.weight") for k in ck["state_dict"])
    with pytest.raises(ValueError, match="pass embeddings"):
        TwoTowerModel.from_checkpoint(ck)
    m2 = TwoTowerModel.from_checkpoint(ck, embeddings=np.load(tmp_path / "e.npy", mmap_mode="c"))
    ids, lens = torch.tensor([[3, 4, 5]]), torch.tensor([3])
    m.eval()
    assert torch.allclose(m.encode_passage(ids, lens), m2.encode_passage(ids, lens))
    assert m2.fingerprint() == ck["fingerprint"]
    # another table under another name is another model
    m3 = TwoTowerModel(30, 8, dict(m.config, embeddings="fp2"), embeddings=emb)
    m3.load_state_dict(m.state_dict())
    assert m3.fingerprint() != m.fingerprint()


def test_weight_fn_checkpoint_is_the_same_model_with_a_per_word_table():
    """--weight-fn: checkpoints bake IDF + MLP(vector) into the ordinary per-word table."""
    import numpy as np
    import torch
    from common.model import TwoTowerModel
    rng = np.random.default_rng(0)
    V, D = 50, 16
    emb = rng.standard_normal((V, D)).astype(np.float32)
    idf = (rng.random(V) + 0.5).astype(np.float32)
    m = TwoTowerModel(V, D, {"out_dim": 8, "weight_fn": 4, "embeddings": "x"}, embeddings=emb, idf=idf)
    with torch.no_grad():
        for t in (m.query_tower, m.passage_tower):
            t.wnet[2].weight.normal_()
            t.wnet[2].bias.fill_(0.3)
    ids = torch.randint(2, V, (5, 7))
    lens = torch.tensor([7, 3, 5, 1, 6])
    ck = m.checkpoint()
    assert ck["config"]["weight_fn"] == 0 and not any(".wnet." in k for k in ck["state_dict"])
    m2 = TwoTowerModel.from_checkpoint(ck, embeddings=emb)
    assert torch.allclose(m2.encode_query(ids, lens), m.encode_query(ids, lens), atol=1e-6)
    assert torch.allclose(m2.encode_passage(ids, lens), m.encode_passage(ids, lens), atol=1e-6)
    assert ck["fingerprint"] == m2.fingerprint()
