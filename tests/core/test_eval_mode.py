"""eval_mode gives every submodule back its own mode, also when the body raises."""

import pytest
from torch import nn

from core.eval_mode import eval_mode


def test_modes_are_restored_per_submodule():
    net = nn.Sequential(nn.Linear(2, 2), nn.Dropout(0.5))
    net.train()
    net[1].eval()  # a part kept in eval on purpose (e.g. a frozen teacher)
    with eval_mode(net):
        assert not any(m.training for m in net.modules())
    assert net.training and net[0].training and not net[1].training
    with pytest.raises(RuntimeError), eval_mode(net):
        raise RuntimeError("boom")
    assert net.training and not net[1].training
