"""Plotly figures for the dashboard, built with the `plotly` package from stored series; pure functions
returning the figure's JSON (the page embeds it in a data attribute, static/js/charts.js draws it)."""
from __future__ import annotations

from typing import Iterable
from typing import Mapping
from typing import Optional
from typing import Sequence

import plotly.graph_objects as go
import plotly.io as pio

from ollama_server.monitoring.catalogue import BY_NAME

Series = Sequence[tuple[float, float]]
MARGIN = dict(l=48, r=12, t=36, b=36)
# One scale per unit: ratios read as percentages, bytes as GiB; the catalogue's unit decides.
SCALES = {"ratio": (100.0, "%"), "bytes": (1 / 1024 ** 3, "GiB"), "hertz": (1e-6, "MHz")}


def _times(points: Series) -> list[float]:
    return [round(t * 1000.0) for t, _ in points]  # epoch milliseconds: what a Plotly date axis reads


def _with_points(figure: go.Figure, points: Sequence[tuple[list, list]]) -> str:
    """The figure as JSON with each trace's x/y filled in afterwards: Plotly validates the figure's structure
    (cheap), and thousands of points are not validated one by one (that took ~100 ms per chart)."""
    spec = figure.to_plotly_json()
    for trace, (xs, ys) in zip(spec["data"], points):
        trace["x"], trace["y"] = xs, ys
    return pio.to_json(spec, validate=False, remove_uids=True, engine="json")


def axis_title(metric: str) -> str:
    """The y-axis title of a catalogue metric: its chart label, with the scaled unit."""
    declared = BY_NAME[metric]
    unit = SCALES.get(declared.unit, (1.0, ""))[1]
    return f"{declared.chart_label} ({unit})" if unit and f"({unit})" not in declared.chart_label else declared.chart_label


def time_series(metric: str, lines: Mapping[str, Series], title: Optional[str] = None,
                threshold: Optional[tuple[float, str]] = None) -> str:
    """A line per label set over time; values scaled by the metric's unit; an optional dashed threshold."""
    declared = BY_NAME[metric]
    scale = SCALES.get(declared.unit, (1.0, ""))[0]
    figure = go.Figure()
    filled = []
    for name, points in lines.items():
        figure.add_trace(go.Scatter(name=name, mode="lines", line={"width": 2}))
        filled.append((_times(points), [round(v * scale, 4) for _, v in points]))
    if threshold is not None:
        figure.add_hline(y=threshold[0], line_dash="dash", line_color="#c0392b", annotation_text=threshold[1])
    figure.update_layout(title={"text": title or declared.chart_label, "font": {"size": 14}}, margin=MARGIN,
                         height=260, showlegend=len(lines) > 1, legend={"orientation": "h", "y": -0.25},
                         yaxis={"title": axis_title(metric), "rangemode": "tozero"}, xaxis={"type": "date"},
                         template="none")
    if not lines:
        figure.add_annotation(text="no data in this range yet", showarrow=False, xref="paper", yref="paper",
                              x=0.5, y=0.5)
    return _with_points(figure, filled)


def bars(title: str, labels: Iterable[str], values: Iterable[Optional[float]], y_title: str,
         colors: Optional[Sequence[str]] = None) -> str:
    """One bar per label (None shows as a gap)."""
    figure = go.Figure(go.Bar(x=list(labels), y=list(values), marker_color=list(colors) if colors else None))
    figure.update_layout(title={"text": title, "font": {"size": 14}}, margin=MARGIN, height=260,
                         yaxis={"title": y_title, "rangemode": "tozero"}, template="none")
    return figure.to_json()


def stacked_split(title: str, devices: Sequence[str], parts: Mapping[str, Sequence[float]], y_title: str) -> str:
    """Stacked bars: one per device, one colour per part (weights, KV cache, free...)."""
    figure = go.Figure([go.Bar(name=name, x=list(devices), y=list(values)) for name, values in parts.items()])
    figure.update_layout(barmode="stack", title={"text": title, "font": {"size": 14}}, margin=MARGIN, height=260,
                         yaxis={"title": y_title}, template="none", legend={"orientation": "h", "y": -0.25})
    return figure.to_json()
