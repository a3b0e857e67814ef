"""charts.py: Plotly figures as JSON, values scaled by the catalogue unit, an annotation when there is no data."""
from __future__ import annotations

import html
import json
import re

from ollama_server.dashboard import charts
from tests.fakes.nvml import FakeNvml

GIB = 1024 ** 3
T0 = 1_800_000_000.0


def figure(text: str) -> dict:
    spec = json.loads(text)  # valid JSON, as the data-figure attribute needs
    assert set(spec) >= {"data", "layout"}
    return spec


def test_a_ratio_reads_as_a_percentage_with_the_unit_on_the_axis():
    spec = figure(charts.time_series("llm_gpu_utilization_ratio", {"GPU 0": [(T0, 0.5), (T0 + 15, 0.975)]}))
    [trace] = spec["data"]
    assert trace["y"] == [50.0, 97.5] and trace["name"] == "GPU 0"
    assert trace["x"] == [T0 * 1000, (T0 + 15) * 1000]  # epoch milliseconds for the date axis
    assert spec["layout"]["yaxis"]["title"]["text"] == "GPU utilization (%)"


def test_bytes_read_as_gib():
    spec = figure(charts.time_series("llm_gpu_memory_used_bytes", {"GPU 0": [(T0, 6 * GIB)], "GPU 1": [(T0, GIB / 2)]}))
    assert [t["y"] for t in spec["data"]] == [[6.0], [0.5]]
    assert spec["layout"]["yaxis"]["title"]["text"] == "VRAM used (GiB)"
    assert spec["layout"]["showlegend"] is True


def test_hertz_read_as_mhz():
    spec = figure(charts.time_series("llm_gpu_clock_sm_hertz", {"GPU 0": [(T0, 1_695_000_000)]}))
    assert spec["data"][0]["y"] == [1695.0]


def test_a_unit_without_a_scale_keeps_its_values_and_label():
    spec = figure(charts.time_series("llm_gpu_temperature_celsius", {"GPU 0": [(T0, 83.0)]}))
    assert spec["data"][0]["y"] == [83.0]
    assert spec["layout"]["yaxis"]["title"]["text"] == "Temperature (°C)"
    assert spec["layout"]["showlegend"] is False  # one line needs no legend


def test_no_lines_give_the_no_data_annotation():
    spec = figure(charts.time_series("llm_gpu_utilization_ratio", {}, "Utilization · last 1h"))
    assert spec["data"] == []
    assert [a["text"] for a in spec["layout"]["annotations"]] == ["no data in this range yet"]
    assert spec["layout"]["title"]["text"] == "Utilization · last 1h"


def test_lines_with_points_have_no_no_data_annotation():
    spec = figure(charts.time_series("llm_gpu_utilization_ratio", {"GPU 0": [(T0, 0.1)]}))
    assert "no data in this range yet" not in [a["text"] for a in spec["layout"].get("annotations", [])]


def test_a_threshold_is_a_dashed_line_with_its_label():
    spec = figure(charts.time_series("llm_gpu_temperature_celsius", {"GPU 0": [(T0, 70.0)]},
                                     threshold=(80.0, "critical 80 °C")))
    [line] = spec["layout"]["shapes"]
    assert line["y0"] == line["y1"] == 80.0 and line["line"]["dash"] == "dash"
    assert "critical 80 °C" in [a["text"] for a in spec["layout"]["annotations"]]


def test_the_gpu_page_embeds_figures_that_parse_as_json(make_app):
    app = make_app(nvml=FakeNvml("four_detailed"))
    app.extensions["ollama_server"].monitor.collect_once()
    page = app.test_client().get("/dashboard/gpu").text
    embedded = re.findall(r'data-figure="([^"]*)"', page)
    assert len(embedded) == 4
    for text in embedded:
        figure(html.unescape(text))
