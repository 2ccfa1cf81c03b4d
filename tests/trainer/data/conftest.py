"""Shared by the dataset tests."""

import pytest

from trainer.config import Data
from trainer.data import build_dataset
from trainer.data.datasets import DataError


def _one_line_error(data: Data, split: str = "train") -> str:
    """The DataError message building ``data`` raises, asserted to be a single line."""
    with pytest.raises(DataError) as e:
        build_dataset(data, split, 0)
    msg = str(e.value)
    assert "\n" not in msg
    return msg


@pytest.fixture
def one_line_error():
    """``one_line_error(data, split="train")``: the one-line DataError message for ``data``."""
    return _one_line_error
