"""The seed's health score (table-driven, hand-computed), thermal bands and optimization rules."""
from __future__ import annotations

import pytest

from ollama_server.monitoring.health_score import health_score
from ollama_server.monitoring.health_score import health_status
from ollama_server.monitoring.health_score import machine_thermal_status
from ollama_server.monitoring.health_score import optimization
from ollama_server.monitoring.health_score import thermal_status

# inputs: cpu %, memory %, GPU °C, error rate %, response ms -> component scores, final score, status.
CASES = [
    # 100-30, 100-40, 100-68/85*100=20, 100-1*10=90, 100-(2000-5000)/250=112 -> clamped 100; 340/5
    ((30, 40, 68, 1, 2000), {"cpu": 70, "memory": 60, "gpu": 20, "errors": 90, "response": 100}, 68.0, "warning"),
    ((0, 0, 0, 0, 0), {"cpu": 100, "memory": 100, "gpu": 100, "errors": 100, "response": 100}, 100.0, "healthy"),
    # 90, 80, 100-42.5/85*100=50, 95, 100-(7500-5000)/250=90; 405/5
    ((10, 20, 42.5, 0.5, 7500), {"cpu": 90, "memory": 80, "gpu": 50, "errors": 95, "response": 90}, 81.0,
     "healthy"),
    # every component below zero, clamped: 100-120, 100-150, 100-100/85*100, 100-15*10, 100-(40000-5000)/250
    ((120, 150, 100, 15, 40000), {"cpu": 0, "memory": 0, "gpu": 0, "errors": 0, "response": 0}, 0.0, "critical"),
    # 50, 50, 100-51/85*100=40, 100-3*10=70, 100-(17500-5000)/250=50; 260/5
    ((50, 50, 51, 3, 17500), {"cpu": 50, "memory": 50, "gpu": 40, "errors": 70, "response": 50}, 52.0, "critical"),
    # the response score's ends: 5 s -> 100 and 30 s -> 0; 100+100+100+100+0 = 400/5
    ((0, 0, 0, 0, 30000), {"cpu": 100, "memory": 100, "gpu": 100, "errors": 100, "response": 0}, 80.0, "warning"),
]


@pytest.mark.parametrize("inputs, components, score, status", CASES)
def test_the_formula_by_hand(inputs, components, score, status):
    cpu, memory, temperature, errors, response = inputs
    result = health_score(cpu_percent=cpu, memory_percent=memory, gpu_temperature_celsius=temperature,
                          error_rate_percent=errors, response_time_ms=response)
    assert {c.name: c.score for c in result.components} == pytest.approx(components)
    assert result.weighted_average == pytest.approx(score)
    assert result.score == pytest.approx(score) and result.status == status
    assert result.skipped == ()


def test_each_component_keeps_its_inputs_and_raw_value():
    result = health_score(cpu_percent=30, memory_percent=40, gpu_temperature_celsius=68, error_rate_percent=1,
                          response_time_ms=2000)
    by_name = {c.name: c for c in result.components}
    assert by_name["response"].raw == pytest.approx(112.0) and by_name["response"].score == 100.0
    assert by_name["gpu"].inputs == {"temperature_celsius": 68, "max_celsius": 85.0}
    assert by_name["errors"].inputs == {"error_rate_percent": 1}
    assert all(c.weight == 1.0 for c in result.components)
    data = result.to_dict()
    assert data["components"]["cpu"]["formula"] == "100 - cpu_percent" and data["score"] == 68.0


@pytest.mark.parametrize("alerts, score, status", [(0, 81.0, "healthy"), (1, 61.0, "warning"), (2, 41.0, "critical"),
                                                   (4, 1.0, "critical"), (5, 0.0, "critical"), (10, 0.0, "critical")])
def test_minus_twenty_per_active_alert_clamped_at_zero(alerts, score, status):
    result = health_score(cpu_percent=10, memory_percent=20, gpu_temperature_celsius=42.5, error_rate_percent=0.5,
                          response_time_ms=7500, active_alerts=alerts)
    assert result.weighted_average == pytest.approx(81.0)
    assert result.alert_penalty == 20.0 * alerts
    assert result.score == pytest.approx(score) and result.status == status


@pytest.mark.parametrize("score, status", [(100, "healthy"), (80.01, "healthy"), (80, "warning"), (70, "warning"),
                                           (60, "warning"), (59.99, "critical"), (0, "critical")])
def test_the_bands(score, status):
    assert health_status(score) == status


def test_missing_inputs_drop_out_and_the_weights_renormalise():
    result = health_score(cpu_percent=20, memory_percent=40)  # a CPU-only server with no requests yet
    assert result.score == pytest.approx((80 + 60) / 2)
    assert result.skipped == ("gpu", "errors", "response")
    assert health_score().score == 100.0 and health_score(active_alerts=1).score == 80.0


def test_weights_and_the_gpu_maximum_can_be_given():
    weighted = health_score(cpu_percent=20, memory_percent=40, weights={"cpu": 3, "memory": 1})
    assert weighted.score == pytest.approx((80 * 3 + 60) / 4)
    assert health_score(gpu_temperature_celsius=45, gpu_max_celsius=90).score == pytest.approx(50.0)


@pytest.mark.parametrize("temperature, status", [(25, "good"), (69.9, "good"), (70, "warning"), (79.9, "warning"),
                                                 (80, "critical"), (85, "critical"), (85.1, "emergency"),
                                                 (None, "unknown")])
def test_thermal_bands(temperature, status):
    assert thermal_status(temperature) == status


def test_the_machine_band_is_the_hottest_gpus():
    assert machine_thermal_status([50, None, 82]) == "critical"
    assert machine_thermal_status([None]) == "unknown" and machine_thermal_status([]) == "unknown"


def test_optimal_when_no_rule_fires():
    result = optimization(gpu_utilization_percent=80, memory_percent=50, response_time_ms=2000)
    assert result.score == 100.0 and result.optimal
    assert [r.message for r in result.recommendations] == ["Keep the current configuration"]


@pytest.mark.parametrize("inputs, rules, score", [
    ({"gpu_utilization_percent": 30}, ["larger_batch"], 85.0),
    ({"memory_percent": 95}, ["reduce_context"], 70.0),
    ({"response_time_ms": 12000}, ["more_gpu_layers"], 80.0),
    ({"gpu_utilization_percent": 30, "memory_percent": 95, "response_time_ms": 12000},
     ["reduce_context", "more_gpu_layers", "larger_batch"], 35.0),
    ({"gpu_utilization_percent": 50, "memory_percent": 90, "response_time_ms": 10000}, ["optimal"], 100.0),
    ({"response_time_ms": 6000, "high_response_ms": 5000}, ["more_gpu_layers"], 80.0),
])
def test_optimization_rules_in_priority_order(inputs, rules, score):
    result = optimization(**inputs)
    assert [r.rule for r in result.recommendations] == rules
    assert result.score == score
    priorities = [r.priority for r in result.recommendations]
    assert priorities == sorted(priorities)


def test_recommendations_carry_category_and_inputs():
    (rec,) = optimization(gpu_utilization_percent=30).recommendations
    assert rec.category == "Performance" and "batch size" in rec.message
    assert rec.inputs == {"gpu_utilization_percent": 30}
