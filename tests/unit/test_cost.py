"""The cost calculator: monthly tokens, energy, electricity, amortization, per-million costs, payback."""
from __future__ import annotations

import math

import pytest

from ollama_server.monitoring.cost import HOURS_PER_MONTH
from ollama_server.monitoring.cost import SECONDS_PER_MONTH
from ollama_server.monitoring.cost import CostInputError
from ollama_server.monitoring.cost import CostInputs
from ollama_server.monitoring.cost import estimate

BASE = dict(hardware_price=1800.0, power_watts=350.0, electricity_price_per_kwh=0.30, utilization_percent=50.0,
            tokens_per_second=100.0, api_price_per_million_tokens=2.0)


def inputs(**changes) -> CostInputs:
    return CostInputs(**{**BASE, **changes})


def test_a_month_is_30_44_days():
    assert HOURS_PER_MONTH == pytest.approx(30.44 * 24) and SECONDS_PER_MONTH == pytest.approx(30.44 * 86400)


@pytest.mark.parametrize("changes, field, expected", [
    # tokens per month = tokens/s x seconds in a month x utilization share
    ({}, "tokens_per_month", 100 * 30.44 * 86400 * 0.5),
    ({"utilization_percent": 100.0}, "tokens_per_month", 100 * 30.44 * 86400),
    ({"utilization_percent": 0.0}, "tokens_per_month", 0.0),
    # no idle draw: the busy share of the month at full power
    ({}, "energy_kwh_per_month", 0.350 * 30.44 * 24 * 0.5),
    # idle draw all month, plus the extra over idle while busy
    ({"idle_watts": 50.0}, "energy_kwh_per_month", (50 + 300 * 0.5) / 1000 * 30.44 * 24),
    ({"idle_watts": 50.0, "utilization_percent": 0.0}, "energy_kwh_per_month", 0.050 * 30.44 * 24),
    ({}, "electricity_per_month", 0.350 * 30.44 * 24 * 0.5 * 0.30),
    ({}, "amortization_per_month", 1800 / 36),
    ({"amortization_months": 12.0}, "amortization_per_month", 150.0),
    ({}, "api_cost_per_month", 100 * 30.44 * 86400 * 0.5 / 1e6 * 2.0),
])
def test_monthly_figures(changes, field, expected):
    assert getattr(estimate(inputs(**changes)), field) == pytest.approx(expected)


def test_cost_per_million_tokens_with_and_without_amortization():
    result = estimate(inputs())
    millions = result.tokens_per_month / 1e6
    assert result.electricity_cost_per_million_tokens == pytest.approx(result.electricity_per_month / millions)
    assert result.total_cost_per_million_tokens == pytest.approx((result.electricity_per_month + 50.0) / millions)
    # 350 W for 1e6 / 100 tokens/s = 10 000 s is 0.9722 kWh: 0.2917 per million tokens at 0.30/kWh.
    assert result.electricity_cost_per_million_tokens == pytest.approx(0.350 * 10000 / 3600 * 0.30)


def test_saving_is_the_api_bill_minus_electricity_and_pays_the_hardware_back():
    result = estimate(inputs())
    assert result.monthly_saving == pytest.approx(result.api_cost_per_month - result.electricity_per_month)
    assert result.net_monthly_saving == pytest.approx(result.monthly_saving - 50.0)
    assert result.payback_months == pytest.approx(1800 / result.monthly_saving)


@pytest.mark.parametrize("changes", [
    {"api_price_per_million_tokens": 0.0},             # a free API: local never pays back
    {"api_price_per_million_tokens": 0.1},             # cheaper than the electricity alone
    {"utilization_percent": 0.0, "idle_watts": 30.0},  # idle all month: only costs
])
def test_payback_is_never_when_local_saves_nothing(changes):
    result = estimate(inputs(**changes))
    assert result.monthly_saving <= 0 and result.payback_months is None
    assert result.to_dict()["payback_months"] is None


def test_no_tokens_means_no_cost_per_million():
    result = estimate(inputs(utilization_percent=0.0))
    assert result.electricity_cost_per_million_tokens is None and result.total_cost_per_million_tokens is None


@pytest.mark.parametrize("changes, field, words", [
    ({"hardware_price": -1.0}, "hardware_price", "negative"),
    ({"power_watts": math.nan}, "power_watts", "finite"),
    ({"electricity_price_per_kwh": math.inf}, "electricity_price_per_kwh", "finite"),
    ({"utilization_percent": 100.5}, "utilization_percent", "between 0 and 100"),
    ({"utilization_percent": -3.0}, "utilization_percent", "negative"),
    ({"tokens_per_second": 0.0}, "tokens_per_second", "greater than 0"),
    ({"api_price_per_million_tokens": "2"}, "api_price_per_million_tokens", "number"),
    ({"amortization_months": 0.0}, "amortization_months", "greater than 0"),
    ({"idle_watts": 400.0}, "idle_watts", "power_watts"),
    ({"power_watts": True}, "power_watts", "number"),
])
def test_bad_inputs_raise_an_error_naming_the_field(changes, field, words):
    with pytest.raises(CostInputError) as caught:
        estimate(inputs(**changes))
    assert caught.value.field == field and words in caught.value.message


def test_the_route_answers_json_for_good_inputs(client):
    query = {**{k: str(v) for k, v in BASE.items()}, "idle_watts": "40"}
    response = client.get("/api/dashboard/cost", query_string=query)
    assert response.status_code == 200
    body = response.get_json()
    expected = estimate(inputs(idle_watts=40.0))
    assert body["estimate"]["payback_months"] == pytest.approx(expected.payback_months)
    assert body["estimate"]["tokens_per_month"] == pytest.approx(expected.tokens_per_month)
    assert body["inputs"]["amortization_months"] == 36.0 and body["assumptions"]["days_per_month"] == 30.44


@pytest.mark.parametrize("changes, field", [
    ({"hardware_price": None}, "hardware_price"),       # missing
    ({"power_watts": "lots"}, "power_watts"),           # not a number
    ({"tokens_per_second": "nan"}, "tokens_per_second"),
    ({"utilization_percent": "150"}, "utilization_percent"),
    ({"tokens_per_second": "0"}, "tokens_per_second"),
])
def test_the_route_answers_400_naming_the_field(client, changes, field):
    query = {k: str(v) for k, v in {**BASE, **changes}.items() if v is not None}
    response = client.get("/api/dashboard/cost", query_string=query)
    assert response.status_code == 400
    assert response.get_json()["error"].startswith(f"{field}:")
