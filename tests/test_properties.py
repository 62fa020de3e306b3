"""Property tests (hypothesis): random valid archs round-trip exactly through the string and JSON forms; random
junk, and valid strings with one edit, give a valid arch or the documented ValueError, never anything else;
the budget parser reads every unit it accepts and rejects junk with a UserError."""
import math

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from mnas.cli import MAX_MS, parse_ms
from mnas.errors import UserError
from mnas.nn.arch import ACTIVATIONS, ArchConfig, BlockConfig

CHANNELS = st.integers(1, 2048)


@st.composite
def archs(draw) -> ArchConfig:
    stem = BlockConfig("conv", draw(st.sampled_from([1, 3, 5, 7])), draw(st.sampled_from([1, 2])), draw(CHANNELS),
                       draw(st.sampled_from(ACTIVATIONS)))
    cin, blocks = stem.out, []
    for _ in range(draw(st.integers(1, 6))):
        kind, stride = draw(st.sampled_from(["conv", "ds", "ir"])), draw(st.sampled_from([1, 2]))
        out = draw(st.one_of(st.just(cin), CHANNELS))  # often equal, so residual adds are drawn too
        blocks.append(BlockConfig(
            kind, draw(st.sampled_from([1, 3, 5, 7])), stride, out, draw(st.sampled_from(ACTIVATIONS)),
            exp=draw(CHANNELS) if kind == "ir" else 0, se=draw(st.integers(0, 64)),
            residual=kind != "conv" and stride == 1 and cin == out and draw(st.booleans()),
            pw_act=kind == "ds" and draw(st.booleans())))
        cin = out
    head = tuple(BlockConfig("conv", 1, 1, draw(CHANNELS), draw(st.sampled_from(ACTIVATIONS)))
                 for _ in range(draw(st.integers(0, 2))))
    return ArchConfig(stem=stem, blocks=tuple(blocks), head=head, hidden=draw(st.integers(0, 4096)),
                      hidden_act=draw(st.sampled_from(ACTIVATIONS)),
                      dropout=draw(st.floats(0, 1, exclude_max=True, allow_nan=False)),
                      num_classes=draw(st.integers(2, 100000)), resolution=draw(st.integers(32, 4096)),
                      in_chans=draw(st.integers(1, 16)))


@settings(max_examples=200, deadline=None)
@given(archs())
def test_random_valid_archs_round_trip(a):
    s = a.to_string()
    assert ArchConfig.from_string(s) == a and ArchConfig.from_string(s).to_string() == s
    assert ArchConfig.from_json(a.to_json()) == a


def parses_or_value_error(text):
    try:
        a = ArchConfig.from_string(text)
    except ValueError as e:
        assert str(e) and "\n" not in str(e)  # one line for the CLI
        return None
    assert ArchConfig.from_string(a.to_string()) == a
    return a


@settings(max_examples=300, deadline=None)
@given(st.text(alphabet="rinstemkcsexdfl_-0123456789.hwrelu6pwa", max_size=80) | st.text(max_size=40))
def test_junk_strings_only_raise_value_error(text):
    parses_or_value_error(text)


@settings(max_examples=300, deadline=None)
@given(archs(), st.data())
def test_one_edit_of_a_valid_string_is_valid_or_value_error(a, data):
    s = a.to_string()
    i = data.draw(st.integers(0, len(s)))
    edit = data.draw(st.sampled_from(["delete", "insert", "replace"]))
    ch = data.draw(st.sampled_from(list("-_0123456789kcsexr.q")))
    t = {"delete": s[:i] + s[i + 1:], "insert": s[:i] + ch + s[i:], "replace": s[:i] + ch + s[i + 1:]}[edit]
    parses_or_value_error(t)


@settings(max_examples=300, deadline=None)
@given(st.floats(1e-3, MAX_MS, allow_nan=False), st.sampled_from([("ms", 1.0), (" ms", 1.0), ("s", 1e-3),
                                                                  ("us", 1e3), ("", 1.0)]))
def test_budget_parser_reads_every_unit(ms, unit):
    suffix, scale = unit
    assert parse_ms(f"{ms * scale!r}{suffix}") == pytest.approx(ms, rel=1e-9)


@settings(max_examples=300, deadline=None)
@given(st.text(max_size=20) | st.floats().map(repr) | st.floats().map(lambda x: f"{x!r}ms"))
def test_budget_parser_accepts_only_positive_times(text):
    try:
        ms = parse_ms(text)
    except UserError as e:
        assert "is invalid" in str(e) and "15ms" in str(e)
        return
    assert math.isfinite(ms) and 0 < ms <= MAX_MS
