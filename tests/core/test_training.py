import pytest
import torch

from cvplug.training import Checkpoint, seed_everything


def train(steps, ckpt=None, stop_at=None):
    seed_everything(7)
    model = torch.nn.Linear(3, 1)
    optimizer = torch.optim.Adam(model.parameters(), lr=0.1)
    start = 0
    if ckpt is not None:
        state = ckpt.restore(model=model, optimizer=optimizer)
        start = state["step"] if state else 0
    for step in range(start, steps):
        x = torch.randn(16, 3)
        loss = (model(x) - x.sum(1, keepdim=True)).pow(2).mean()
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        if ckpt is not None:
            ckpt.save(step=step + 1, model=model, optimizer=optimizer)
        if stop_at is not None and step + 1 == stop_at:
            return None
    return model.weight.detach().clone()


def test_same_seed_same_numbers():
    assert torch.equal(train(20), train(20))


def test_interrupted_training_resumes_to_identical_weights(tmp_path):
    ckpt = Checkpoint(tmp_path / "run.ckpt")
    assert train(20, ckpt, stop_at=8) is None and ckpt.exists()
    assert torch.equal(train(20, ckpt), train(20))


def test_damaged_checkpoint_says_so(tmp_path):
    path = tmp_path / "bad.ckpt"
    path.write_bytes(b"garbage")
    with pytest.raises(ValueError, match="damaged"):
        Checkpoint(path).load()


def test_a_checkpoint_resumes_only_the_fit_it_was_written_for(tmp_path):
    """With an identity, a checkpoint is saved with it and refused by a fit with another (or with none saved)."""
    path = tmp_path / "run.ckpt"
    model = torch.nn.Linear(2, 1)
    Checkpoint(path, {"lr": 0.1}).save(model=model, step=3)
    assert Checkpoint(path, {"lr": 0.1}).restore(model=model) == {"step": 3}
    assert Checkpoint(path).restore(model=model) == {"step": 3}                 # no identity asked for
    with pytest.raises(ValueError, match="was written for other settings, data or starting model"):
        Checkpoint(path, {"lr": 0.2}).restore(model=model)
    Checkpoint(path).save(model=model, step=4)
    with pytest.raises(ValueError, match="was written for other settings"):
        Checkpoint(path, {"lr": 0.1}).restore(model=model)
