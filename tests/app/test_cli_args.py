"""The shared argument types (hwquant/app/cli_args.py): shapes and counts parsed, or refused
with a usage error naming the fix."""

from __future__ import annotations

import argparse

import pytest

from hwquant.app.cli_args import InputShape, input_shape, positive_int


@pytest.mark.parametrize(
    ("text", "shape"),
    [
        ("1,28,28", InputShape((1, 28, 28))),
        ("8,3,32,32", InputShape((3, 32, 32), batch=8)),
        ("784", InputShape((784,))),
    ],
)
def test_shapes_parse_with_and_without_the_batch(text, shape):
    assert input_shape(text) == shape


@pytest.mark.parametrize("text", ["1,28", "1,0,28", "a,b,c", "", "1,2,3,4,5", "-1,28,28"])
def test_a_bad_shape_is_refused_with_the_forms_it_takes(text):
    with pytest.raises(argparse.ArgumentTypeError, match=r"is not a shape\. Fix: .*C,H,W"):
        input_shape(text)


def test_counts_must_be_positive_integers():
    assert positive_int("3") == 3
    for text in ("0", "-2", "two", "1.5"):
        with pytest.raises(argparse.ArgumentTypeError, match="not a positive integer"):
            positive_int(text)


def test_a_parser_exits_with_the_usage_code_naming_the_option(capsys):
    parser = argparse.ArgumentParser(prog="hwquant x")
    parser.add_argument("--input-shape", type=input_shape)
    with pytest.raises(SystemExit) as exit_info:
        parser.parse_args(["--input-shape", "1,28"])
    assert exit_info.value.code == 2
    assert "--input-shape" in capsys.readouterr().err
