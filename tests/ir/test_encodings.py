"""The weight-encoding registry (hwquant/ir/encodings.py) and what the cost model reads of an
encoding: each scheme's encoding is registered once with its kernel, lanes and ONNX op."""

from __future__ import annotations

import numpy as np
import pytest

import hwquant  # noqa: F401  (registers every scheme's encoding)
from hwquant.core.errors import ConfigError
from hwquant.ir.encodings import EncodingHandler, find_encoding, register_encoding, registered
from hwquant.ir.intmodel import CodebookEncoding, MSQEncoding, WeightEncoding


def test_each_scheme_encoding_has_its_kernel_lanes_and_onnx_op():
    assert [h.encoding for h in registered()] == [MSQEncoding, CodebookEncoding]
    for handler in registered():
        assert find_encoding(handler.encoding) is handler
        assert handler.lanes is not None and handler.onnx_op is not None
    assert find_encoding(MSQEncoding).onnx_op.__name__ == "msq_weight_op"
    assert find_encoding(CodebookEncoding).onnx_op.__name__ == "codebook_weight_op"


def test_an_unregistered_encoding_is_not_found_and_a_second_registration_refused():
    class Other(WeightEncoding):
        pass

    assert find_encoding(Other) is None
    with pytest.raises(ConfigError, match="MSQEncoding is registered twice"):
        register_encoding(EncodingHandler(MSQEncoding, find_encoding(MSQEncoding).accumulate))


def test_the_cost_model_reads_code_and_multiplier_bits_from_the_encoding():
    rows = np.array([True, False])
    msq = MSQEncoding(
        rows,
        sign=np.zeros((2, 3), np.int8),
        shift1=np.full((2, 3), -1, np.int8),
        shift2=np.full((2, 3), -1, np.int8),
        fixed=np.zeros((2, 3), np.int64),
        bits=4,
    )
    book = CodebookEncoding(np.zeros((2, 3), np.int64), np.zeros((1, 4), np.int64), 2, 8)
    assert (msq.code_bits(), msq.multiplier_bits(7), msq.multiply_free_rows()) == (4, 4, 1)
    assert (book.code_bits(), book.multiplier_bits(7), book.multiply_free_rows()) == (2, 7, 0)
    assert MSQEncoding.splits_rows and not CodebookEncoding.splits_rows
