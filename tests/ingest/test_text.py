"""voxgan.ingest.formats.text: the compiled decimal parser gives numpy's numbers, bit for bit."""

import numpy as np
import pytest

from voxgan.ingest.formats.text import parse_numbers


@pytest.mark.parametrize("fmt", ["%.6f", "%.8g", "%g", "%.4e", "%d", "%.17g", "%.3E"])
def test_numbers_in_every_usual_notation_parse_exactly_as_numpy_does(fmt):
    values = np.random.default_rng(len(fmt)).normal(size=5000) * 10.0 ** np.arange(-8, 8).repeat(313)[:5000]
    text = "\n".join(" ".join(fmt % v for v in row) for row in values.reshape(-1, 5)).encode()
    assert np.array_equal(parse_numbers(text), np.fromstring(text, sep=" "))


@pytest.mark.parametrize(
    "text",
    [
        b"-1.5 +2.25e3 3E-2\r\n 0.1\t7",
        b".5 5. -.5e+1",
        b"nan 1 inf",
        b"0.12345678901234567",
        b"1e400",
        b"123456789012345678901",
        b"1e-22 1e22 1e-23",
    ],
)
def test_unusual_numbers_still_parse_as_numpy_does(text):
    assert np.array_equal(parse_numbers(text), np.fromstring(text, sep=" "), equal_nan=True)


@pytest.mark.parametrize("text", [b"1e", b"1-2", b"--1", b"1.2.3", b"e5", b"-", b"1 two 3"])
def test_text_that_is_not_numbers_gives_none(text):
    assert parse_numbers(text) is None
