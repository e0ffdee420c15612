"""Wrong inputs into ``IntModel.run`` / ``quantize_input`` are clear errors (issue 17)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from hwquant.core.errors import HwquantError
from hwquant.core.intmath import qrange
from tests.helpers import lowered_small_cnn


@pytest.fixture(scope="module")
def small_cnn():
    return lowered_small_cnn()


def _assert_error(call, *needles: str) -> None:
    with pytest.raises(HwquantError) as info:
        call()
    for needle in (*needles, "Fix:"):
        assert needle in str(info.value), str(info.value)


def test_numpy_and_float_inputs_are_refused(small_cnn):
    int_model, x = small_cnn
    codes = int_model.quantize_input(x)
    _assert_error(lambda: int_model.run(codes.numpy()), "ndarray")
    _assert_error(lambda: int_model.run(codes.float()), "torch.float32")


def test_codes_outside_the_input_range_are_refused(small_cnn):
    int_model, x = small_cnn
    lo, hi = qrange(int_model.input.bits, int_model.input.signed)
    codes = int_model.quantize_input(x)
    codes[0, 0, 0, 0] = hi + 1
    _assert_error(lambda: int_model.run(codes), f"[{lo}, {hi}]", str(hi + 1))


def test_wrong_channels_and_size_name_the_layer(small_cnn):
    int_model, x = small_cnn
    first = int_model.weight_nodes()[0]
    wide = int_model.quantize_input(torch.cat([x, x], dim=1))
    _assert_error(lambda: int_model.run(wide), f"'{first.name}'", "takes 1 channels, got 2")
    big = int_model.quantize_input(torch.randn(2, 1, 16, 16))
    _assert_error(lambda: int_model.run(big), "reshapes", "got (64, 8, 8)")


@pytest.mark.parametrize("dtype", [torch.uint8, torch.int64])
def test_quantize_input_refuses_integer_images(small_cnn, dtype):
    int_model, _ = small_cnn
    images = torch.randint(0, 256, (2, 1, 8, 8)).to(dtype)
    _assert_error(lambda: int_model.quantize_input(images), str(dtype))
    _assert_error(lambda: int_model.quantize_input(np.zeros((2, 1, 8, 8), np.float32)), "ndarray")
