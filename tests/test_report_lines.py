"""``optimizer.report.lines.add_hlines`` draws the very figure plotly's ``add_hline`` calls one by one draw (the
sandbox's twelve lines took ~0.2 s of its ~0.4 s of CPU that way; the pressure plots draw nine and two)."""

from __future__ import annotations

import plotly.graph_objects as go
import pytest
from plotly.subplots import make_subplots

from optimizer.report import sandbox as sbmod
from optimizer.report.lines import add_hlines

LINES = [
    dict(y=1.25, line=dict(color="#2e7d32", dash="dash", width=1), annotation_text="BOT", annotation_position="top left",
         row=1, col=1),
    dict(y=0.5, line=dict(color="#9e9e9e", dash="dot", width=1), row=2, col=1),  # row 2 has no trace: left out
    dict(y=70, line=dict(color="#c62828", dash="dot", width=1), annotation_text="sell 70", annotation_font_size=9,
         annotation_position="bottom right", row=3, col=1),  # row 3: no trace, but a shape on its data coordinates
    dict(y=0.75, line=dict(color="#c62828", dash="dash", width=1), annotation_text="SELL",
         annotation_position="bottom left", row=1, col=1),
]


def _figure() -> go.Figure:
    fig = make_subplots(rows=3, cols=1, shared_xaxes=True, subplot_titles=("one", "two", "three"))
    fig.add_trace(go.Scatter(x=["2024-01-02", "2024-01-03"], y=[1.0, 1.3]), row=1, col=1)
    fig.add_shape(type="rect", x0="2024-01-02", x1="2024-01-03", y0=60, y1=80, xref="x3", yref="y3")
    fig.add_annotation(text="note", x="2024-01-02", y=1.1, xref="x", yref="y", showarrow=False)
    return fig


def test_the_lines_are_the_figure_plotlys_own_calls_draw():
    one_by_one = _figure()
    for kw in LINES:
        one_by_one.add_hline(**kw)
    batched = add_hlines(_figure(), LINES)
    assert batched.to_plotly_json() == one_by_one.to_plotly_json()
    lay = batched.layout
    assert [s.yref for s in lay.shapes] == ["y3", "y", "y3", "y"]  # the row-2 line was left out, as plotly does
    assert [a.text for a in lay.annotations] == ["one", "two", "three", "note", "BOT", "sell 70", "SELL"]


def _panel():
    import numpy as np
    import pandas as pd

    from optimizer.engine.panel import Panel

    dates = pd.bdate_range("2023-01-02", periods=120)
    rows = []
    for sym, k in (("AAA", 1.0), ("BBB", 2.0)):
        for t, d in enumerate(dates):
            b, s = 1000.0 + 37.0 * ((t * 7) % 11) * k, 900.0 + 23.0 * ((t * 5) % 13)
            c = 10.0 + 0.5 * np.sin(t / 5.0) * k
            rows.append({"date": d, "symbol": sym, "open": c, "high": c + 0.2, "low": c - 0.2, "close": c,
                         "volume": 1e5, "short_buy_volume": b, "short_sell_volume": s, "short_buy_sell_ratio": b / s,
                         "lit_buy_volume": 400.0 + t, "lit_sell_volume": 350.0 + (t % 7) * 20,
                         "confidence": 0.2 + 0.005 * t})
    return Panel.from_frame(pd.DataFrame(rows))


@pytest.mark.parametrize("kw", [dict(z_window=20, buy=70, sell=30), dict(z_window=10, buy=60, sell=40, dot_mode="all")])
def test_the_sandbox_figure_equals_its_lines_drawn_one_by_one(monkeypatch, kw):
    panel = _panel()
    batched = sbmod.sandbox_figure(panel, "AAA", **kw)
    monkeypatch.setattr(sbmod, "add_hlines", lambda fig, lines: [fig.add_hline(**k) for k in lines])
    one_by_one = sbmod.sandbox_figure(panel, "AAA", **kw)
    assert batched.to_plotly_json() == one_by_one.to_plotly_json()
    shapes = batched.layout.shapes
    # buy and sell on the configuration row and the three score rows; 1.0, 1.25 / 0.75 and 0.0 on the input rows
    assert sorted(s.yref for s in shapes) == sorted(["y2", "y2", "y3", "y6", "y6", "y7", "y7", "y8", "y8", "y9", "y9", "y10"])


def test_the_pressure_plots_equal_their_lines_drawn_one_by_one(monkeypatch):
    import numpy as np
    import pandas as pd

    from optimizer.analytics import plots

    t = np.arange(60)
    df = pd.DataFrame({"date": pd.bdate_range("2024-01-02", periods=60), "short_buy_sell_ratio": 1.0 + 0.4 * np.sin(t / 4),
                       "agreement": ["both"] * 60, "lit_flow_imbalance": 0.25 * np.cos(t / 6),
                       "otc_participation_z": np.sin(t / 9), "otc_participation_rate": 0.1 + 0.01 * np.cos(t / 9),
                       "otc_wow_delta": 0.001 * t, "confidence": 0.5 + 0.002 * t,
                       "accumulation_score": 50 + 40 * np.sin(t / 5), "total_volume": 1e6 + t,
                       "short_volume": 4e5 + t, "close": 10 + 0.1 * t})
    batched = [plots._layered(df, "AAA", 65, 35), plots._short_only(df, "AAA")]
    monkeypatch.setattr(plots, "add_hlines", lambda fig, lines: [fig.add_hline(**k) for k in lines])
    one_by_one = [plots._layered(df, "AAA", 65, 35), plots._short_only(df, "AAA")]
    assert [f.to_plotly_json() for f in batched] == [f.to_plotly_json() for f in one_by_one]
    assert [len(f.layout.shapes) for f in batched] == [9, 2]  # BOT/SELL, four imbalance levels, 50, buy, sell
