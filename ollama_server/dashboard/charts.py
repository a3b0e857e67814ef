"""Plotly figures for the dashboard, built with the `plotly` package from stored series; pure functions
returning the figure's JSON (the page embeds it in a data attribute, static/js/charts.js draws it)."""
from __future__ import annotations

import json
from functools import lru_cache
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


def axis_title(metric: str) -> str:
    """The y-axis title of a catalogue metric: its chart label, with the scaled unit."""
    declared = BY_NAME[metric]
    unit = SCALES.get(declared.unit, (1.0, ""))[1]
    return f"{declared.chart_label} ({unit})" if unit and f"({unit})" not in declared.chart_label else declared.chart_label


@lru_cache(maxsize=512)
def _skeleton(metric: str, names: tuple[str, ...], title: str, threshold: Optional[tuple[float, str]]) -> str:
    """The figure without its points, built and validated by Plotly once per (metric, lines, title, threshold):
    building a figure costs 25-45 ms whatever its size, so each poll only fills in the points."""
    declared = BY_NAME[metric]
    figure = go.Figure()
    for name in names:
        figure.add_trace(go.Scatter(name=name, mode="lines", line={"width": 2}))
    if threshold is not None:
        figure.add_hline(y=threshold[0], line_dash="dash", line_color="#c0392b", annotation_text=threshold[1])
    figure.update_layout(title={"text": title, "font": {"size": 14}}, margin=MARGIN,
                         height=260, showlegend=len(names) > 1, legend={"orientation": "h", "y": -0.25},
                         yaxis={"title": axis_title(declared.name), "rangemode": "tozero"}, xaxis={"type": "date"},
                         template="none")
    if not names:
        figure.add_annotation(text="no data in this range yet", showarrow=False, xref="paper", yref="paper",
                              x=0.5, y=0.5)
    return pio.to_json(figure.to_plotly_json(), validate=False, remove_uids=True, engine="json")


def time_series(metric: str, lines: Mapping[str, Series], title: Optional[str] = None,
                threshold: Optional[tuple[float, str]] = None) -> str:
    """A line per label set over time; values scaled by the metric's unit; an optional dashed threshold."""
    declared = BY_NAME[metric]
    scale = SCALES.get(declared.unit, (1.0, ""))[0]
    spec = json.loads(_skeleton(metric, tuple(lines), title or declared.chart_label, threshold))
    for trace, points in zip(spec["data"], lines.values()):
        trace["x"] = _times(points)
        trace["y"] = [round(v * scale, 4) for _, v in points]
    return json.dumps(spec, separators=(",", ":"))


def checkpoint_metric(metric: str, lines: Mapping[str, Sequence[tuple[str, float]]],
                      order: Sequence[str], title: Optional[str] = None) -> str:
    """One eval metric across checkpoints: a line per eval name over model ids (a category axis in `order`)."""
    figure = go.Figure()
    for name, points in lines.items():
        figure.add_trace(go.Scatter(name=name, mode="lines+markers", x=[m for m, _ in points],
                                    y=[round(v, 4) for _, v in points], line={"width": 2}, marker={"size": 8}))
    # Checkpoints in training order for every trace: Plotly would otherwise order categories by first sight.
    figure.update_layout(title={"text": title or f"{metric} by checkpoint", "font": {"size": 14}}, margin=MARGIN,
                         height=300, showlegend=len(lines) > 1, legend={"orientation": "h", "y": -0.35},
                         xaxis={"type": "category", "categoryorder": "array", "categoryarray": list(order),
                                "title": "checkpoint (model)"},
                         yaxis={"title": metric, "rangemode": "tozero"}, template="none")
    if not lines:
        figure.add_annotation(text="no finished eval run yet", showarrow=False, xref="paper", yref="paper",
                              x=0.5, y=0.5)
    return pio.to_json(figure.to_plotly_json(), validate=False, remove_uids=True, engine="json")
