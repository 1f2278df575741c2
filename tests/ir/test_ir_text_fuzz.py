"""Property tests of the text form: every printable attribute value parses back to
itself, and damaged graph text either parses or raises `ParseError` (never anything else)."""
import numpy as np
import pytest

import lucid
from _ir_helpers import same
from lucid.ir import parse
from lucid.ir.parser import ParseError, parse_value
from lucid.ir.printer import format_value
from lucid.ops.shape import slice_axis

hypothesis = pytest.importorskip("hypothesis")
given, settings, st = hypothesis.given, hypothesis.settings, hypothesis.strategies

_scalars = (st.integers(-10**20, 10**20) | st.floats(allow_nan=True, allow_infinity=True) | st.booleans()
            | st.none() | st.text(max_size=8)
            | st.sampled_from([lucid.float32, lucid.float64, lucid.int32, lucid.int64, lucid.bool_]))
_values = st.recursive(_scalars, lambda inner: st.lists(inner, max_size=4).map(tuple), max_leaves=12)


@settings(max_examples=300, deadline=None)
@given(_values)
def test_every_printable_value_parses_back(value):
    assert same(parse_value(format_value(value)), value)


def _sample(x, w):
    y = lucid.pad(lucid.matmul(x, w), ((1, 0), (0, 2)), value=-1.5)
    y = slice_axis(y, 1, None, None, -2) * float("inf")
    return lucid.sum(lucid.cast(y > 0.5, lucid.float64), axis=(0,), keepdims=True)


_TEXT = lucid.trace(_sample, np.ones((2, 3), np.float32), np.ones((3, 4), np.float32)).format(locs=True)
_DAMAGE = ["", "%", "(", ")", "{", "}", ",", "-", "1", ".5", "e", "\n", " ", '"', "#", "x", "=", ":", "[", "\\"]


@settings(max_examples=300, deadline=None)
@given(st.integers(0, len(_TEXT) - 1), st.sampled_from(_DAMAGE))
def test_damaged_text_parses_or_raises_parse_error(pos, damage):
    text = _TEXT[:pos] + damage + _TEXT[pos + 1:]
    try:
        parse(text)
    except ParseError:
        pass
