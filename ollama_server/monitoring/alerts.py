"""The alert state machine: pure evaluation of rules over values into new states and transitions."""
from __future__ import annotations

import math
import operator
from dataclasses import dataclass
from dataclasses import replace
from typing import Any
from typing import Callable
from typing import Iterable
from typing import Mapping
from typing import Optional

from ollama_server.monitoring.alert_rules import LabelSet
from ollama_server.monitoring.alert_rules import Rule

INACTIVE, PENDING, FIRING, RESOLVED = "inactive", "pending", "firing", "resolved"
# Why a transition was recorded; also sent as Alertmanager's `notification_reason`.
FIRED, ESCALATED, DEESCALATED, REPEAT, CLEARED = "fired", "escalated", "deescalated", "repeat", "resolved"

_COMPARE: dict[str, Callable[[float, float], bool]] = {
    ">": operator.gt, ">=": operator.ge, "<": operator.lt, "<=": operator.le}

StateKey = tuple[str, LabelSet]


@dataclass(frozen=True)
class AlertState:
    """Where one (rule, label set) stands; absent from the states mapping means inactive."""

    phase: str
    active_since: float
    critical_since: Optional[float] = None
    severity: Optional[str] = None
    fired_at: Optional[float] = None
    last_sent: Optional[float] = None
    value: float = math.nan


@dataclass(frozen=True)
class Transition:
    """One notifiable change of an alert: the record that delivery and history consume."""

    old: str
    new: str
    severity: str
    rule: Rule
    labels: LabelSet
    value: float
    at: float
    started_at: float
    reason: str
    previous_severity: Optional[str] = None

    @property
    def threshold(self) -> Optional[float]:
        """The threshold of the transition's severity."""
        return self.rule.critical if self.severity == "critical" else self.rule.warning

    def alert_labels(self, severity: Optional[str] = None) -> dict[str, str]:
        """Alertmanager labels: alertname, severity, then the series' own labels."""
        labels = dict(self.labels)
        labels.update(alertname=self.rule.name, severity=severity or self.severity)
        return labels


def labelset(labels: Any) -> LabelSet:
    """A canonical, hashable label set from a mapping or pairs."""
    items = labels.items() if isinstance(labels, Mapping) else labels
    return tuple(sorted((str(k), str(v)) for k, v in items))


def _breaches(rule: Rule, value: float) -> tuple[bool, bool]:
    """(breaches warning-or-worse, breaches critical); NaN breaches nothing."""
    compare = _COMPARE[rule.comparison]
    if math.isnan(value):
        return False, False
    critical = rule.critical is not None and compare(value, rule.critical)
    warning = critical or (rule.warning is not None and compare(value, rule.warning))
    return warning, critical


def _qualified(rule: Rule, state: AlertState, now: float) -> Optional[str]:
    """The severity whose breach has lasted the rule's duration, if any.

    Each level needs its own sustained breach, as two Prometheus rules with the same `for` would:
    a one-sample spike to critical during a warning does not escalate.
    """
    if state.critical_since is not None and now - state.critical_since >= rule.duration_s:
        return "critical"
    if rule.warning is not None and now - state.active_since >= rule.duration_s:
        return "warning"
    return None


def _step(rule: Rule, labels: LabelSet, state: Optional[AlertState], value: Optional[float],
          now: float) -> tuple[Optional[AlertState], Optional[Transition]]:
    """Advance one (rule, label set); a missing value counts as cleared, like an absent Prometheus series."""
    warning, critical = _breaches(rule, value) if value is not None else (False, False)
    if not warning:
        if state is None or state.phase != FIRING:
            return None, None  # a pending breach that clears is dropped silently
        return None, Transition(FIRING, RESOLVED, state.severity or "warning", rule, labels,
                                state.value if value is None else value, now, state.active_since, CLEARED)
    if state is None:
        state = AlertState(phase=PENDING, active_since=now)
    critical_since = (state.critical_since if state.critical_since is not None else now) if critical else None
    state = replace(state, critical_since=critical_since, value=value)
    severity = _qualified(rule, state, now)
    if severity is None:
        return state, None
    if state.phase == PENDING:
        fired = replace(state, phase=FIRING, severity=severity, fired_at=now, last_sent=now)
        return fired, Transition(PENDING, FIRING, severity, rule, labels, value, now, state.active_since, FIRED)
    if severity != state.severity:
        reason = ESCALATED if severity == "critical" else DEESCALATED
        changed = replace(state, severity=severity, last_sent=now)
        return changed, Transition(FIRING, FIRING, severity, rule, labels, value, now, state.active_since, reason,
                                   previous_severity=state.severity)
    if rule.repeat_interval_s > 0 and state.last_sent is not None and now - state.last_sent >= rule.repeat_interval_s:
        repeated = replace(state, last_sent=now)
        return repeated, Transition(FIRING, FIRING, severity, rule, labels, value, now, state.active_since, REPEAT)
    return state, None


def evaluate(rules: Iterable[Rule], values: Mapping[tuple[str, Any], float],
             states: Mapping[StateKey, AlertState], now: float,
             ) -> tuple[dict[StateKey, AlertState], list[Transition]]:
    """New states and the transitions to notify, for every rule over every matching series at time `now`.

    `values` maps (metric, labels) to the latest value; labels may be a mapping or pairs.
    States are keyed by (rule name, label set); rules that are gone drop their states silently.
    """
    series = [(metric, labelset(labels), float(value)) for (metric, labels), value in values.items()]
    new_states: dict[StateKey, AlertState] = {}
    transitions: list[Transition] = []
    for rule in rules:
        seen: dict[LabelSet, float] = {}
        for metric, labels, value in series:
            if rule.matches(metric, labels):
                seen[labels] = value
        # Series we knew but that reported nothing this round: resolve them (or drop if pending).
        known = [labels for name, labels in states if name == rule.name and labels not in seen]
        for labels in sorted(seen) + sorted(known):
            state, transition = _step(rule, labels, states.get((rule.name, labels)), seen.get(labels), now)
            if state is not None:
                new_states[(rule.name, labels)] = state
            if transition is not None:
                transitions.append(transition)
    return new_states, transitions


def firing(states: Mapping[StateKey, AlertState]) -> dict[StateKey, AlertState]:
    """Only the firing alerts (what the dashboard and health score count as active)."""
    return {key: state for key, state in states.items() if state.phase == FIRING}
