"""The equal-weight universe the PBO columns subtract (`walkforward._universe_returns`) books a symbol's move across
a gap in its prices, as the account now does (tests/test_numbers_gaps.py): held at its last close on the missing
sessions (return 0) and the move since that close on the next bar. Before, the missing sessions and the first
session after them were left out of the mean, so the move was lost from the basket while the account booked it.
Found by the explore5 audit. Oracle: hand table."""

from __future__ import annotations

import numpy as np

import optimizer.validate.walkforward as wfmod

NAN = float("nan")


def test_the_universe_basket_books_the_move_across_a_gap_and_ignores_unlisted_rows():
    # S0 has no bar on rows 2-3 (a gap); S1 trades every row; S2 lists from row 2 and delists after row 3.
    close = np.array([[10.0, 20.0, NAN],
                      [11.0, 21.0, NAN],
                      [NAN, 21.0, 5.0],
                      [NAN, 22.0, 6.0],
                      [13.2, 22.0, NAN],
                      [13.2, 23.1, NAN]])
    r = wfmod._universe_returns(close)
    expected = [0.0,
                (0.1 + 0.05) / 2,               # both
                (0.0 + 0.0) / 2,                # S0 held at 11 (0), S1 flat; S2's first bar has no return
                (0.0 + 22 / 21 - 1 + 0.2) / 3,  # S0 held, S1, S2 +20 %
                (13.2 / 11 - 1 + 0.0) / 2,      # S0 books its move since 11; S2 delisted: out
                (0.0 + 0.05) / 2]
    np.testing.assert_allclose(r, expected, rtol=0, atol=1e-15)
