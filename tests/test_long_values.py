"""A long value a user typed is quoted cut to ``QUOTE_MAX`` characters with its length, as a file's value is: a
5,000-character argument must not make a 5,000-character error line (one line, exit 2, still naming the flag and
the rule)."""

from __future__ import annotations

import pytest

from optimizer.data.symbols import canonical_symbol
from optimizer.errors import ParameterError, check_param
from tests._cli_helpers import cli, one_line_error

LONG = "B" * 5000
QUOTE_MAX = 60  # optimizer.errors.QUOTE_MAX


def test_a_long_symbol_argument_is_quoted_cut_with_its_length(tmp_path):
    line = one_line_error(cli("fetch", "prices", "--symbols", f"A,{LONG}", "--start", "2024-01-02",
                              "--end", "2024-01-05", "--out", tmp_path),
                          "--symbols must be a valid symbol", f"got {'B' * QUOTE_MAX!r}... (5000 characters)",
                          "longer than 24 characters")
    assert len(line) < 300, len(line)


@pytest.mark.parametrize("raw", [LONG, "B\x01" + LONG])  # too long; a control character (its own message)
def test_canonical_symbol_quotes_a_long_value_cut(raw):
    with pytest.raises(ParameterError) as ei:
        canonical_symbol(raw, "ticker")
    msg = str(ei.value)
    assert f"({len(raw)} characters)" in msg and len(msg) < 300, msg
    assert msg.startswith("ticker must be a valid symbol, got ticker='B"), msg


def test_check_param_quotes_a_long_string_cut_and_other_values_whole():
    with pytest.raises(ParameterError) as ei:
        check_param(False, "method", "one of quote, tick", LONG)
    assert str(ei.value) == f"method must be one of quote, tick, got method={'B' * QUOTE_MAX!r}... (5000 characters)"
    with pytest.raises(ParameterError, match=r"^window must be >= 2, got window=1$"):
        check_param(False, "window", ">= 2", 1)
    with pytest.raises(ParameterError, match=r"^name must be short, got name='abc'$"):
        check_param(False, "name", "short", "abc")
