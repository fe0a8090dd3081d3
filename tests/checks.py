"""Assertions shared by several test modules."""

import torch

from koopscope.io.checkpoint import load_checkpoint


def assert_same_checkpoints(a, b) -> None:
    """Two checkpoint files hold the same tensors, bit for bit."""
    ta, _ = load_checkpoint(a)
    tb, _ = load_checkpoint(b)
    assert ta.keys() == tb.keys()
    for k in ta:
        assert torch.equal(ta[k], tb[k]), k
