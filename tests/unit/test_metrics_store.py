"""The metrics store against a real SQLite file: round trips, roll-ups, pruning, and never raising on a lock."""
from __future__ import annotations

import json
import sqlite3
import threading
import time

import pytest

from ollama_server.storage import migrations
from ollama_server.storage.db import open_db
from ollama_server.storage.metrics import MetricsStore
from ollama_server.storage.metrics import Sample

T0 = 1_699_999_200.0  # a multiple of 3600 (and of 60): bucket starts are easy to write down
HOUR = 3600.0


class Clock:
    """A clock the test moves by hand."""

    def __init__(self, now: float = T0):
        self.now = now

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def clock():
    return Clock()


@pytest.fixture
def store(tmp_path, clock):
    store = MetricsStore(tmp_path / "data" / "metrics.db", clock=clock, raw_window_s=HOUR,
                         rollup_window_s=10 * HOUR, busy_timeout_s=0.2)
    yield store
    store.close()


def fill(store, start, end, every=10.0, metric="gpu_temperature_celsius", labels=None, value=lambda ts: ts % 600):
    samples = []
    ts = start
    while ts < end:
        samples.append(Sample(metric, labels or {}, value(ts), ts))
        ts += every
    assert store.insert(samples).ok
    return samples


def expected_average(samples, step, since=float("-inf")):
    buckets = {}
    for s in samples:
        if s.ts >= since:
            buckets.setdefault((s.ts // step) * step, []).append(s.value)
    # pytest.approx takes no nested data: compare each value, bucket starts exactly
    return [(b, pytest.approx(sum(v) / len(v))) for b, v in sorted(buckets.items())]


@pytest.mark.parametrize("step", [10.0, 60.0, 300.0, 900.0])
def test_it_round_trips_samples_averaged_per_step(store, clock, step):
    clock.now = T0 + HOUR
    samples = fill(store, T0 + 5, T0 + HOUR)
    assert store.series("gpu_temperature_celsius", T0, step) == expected_average(samples, step)


def test_it_leaves_empty_buckets_out_and_honours_until(store, clock):
    clock.now = T0 + HOUR
    store.insert([Sample("m", {}, 1.0, T0 + 10), Sample("m", {}, 3.0, T0 + 20), Sample("m", {}, 7.0, T0 + 200)])
    assert store.series("m", T0, 60) == [(T0, 2.0), (T0 + 180, 7.0)]
    assert store.series("m", T0, 60, until=T0 + 100) == [(T0, 2.0)]
    assert store.series("other", T0, 60) == []


def test_it_skips_missing_readings_instead_of_storing_zero(store, clock):
    clock.now = T0 + 60
    result = store.insert([("m", {}, None, T0), ("m", {}, float("nan"), T0 + 1), ("m", {}, 4.0, T0 + 2)])
    assert result.ok and result.rows == 1
    assert store.series("m", T0 - 60, 60) == [(T0, 4.0)]


def test_it_reads_raw_samples_inside_the_raw_window_and_rollups_outside(store, clock):
    samples = fill(store, T0, T0 + 3 * HOUR)
    clock.now = T0 + 3 * HOUR
    assert store.rollup().ok
    assert store.prune().ok  # raw rows older than one hour are gone; their roll-ups remain

    recent = store.series("gpu_temperature_celsius", clock.now - 30 * 60, 10)
    assert recent == expected_average(samples, 10, since=clock.now - 30 * 60)
    assert recent[1][0] - recent[0][0] == 10  # 10 s buckets: only raw samples have them

    old = store.series("gpu_temperature_celsius", T0, 10)
    old_part = [point for point in old if point[0] < T0 + 2 * HOUR]
    assert old_part[0] == expected_average(samples, 60)[0]
    assert {b - a for (a, _), (b, _) in zip(old_part, old_part[1:])} == {60}  # minute resolution

    hourly = store.series("gpu_temperature_celsius", T0, HOUR)
    assert hourly == expected_average(samples, HOUR)  # whole history, no point counted twice


def test_it_joins_rollups_and_newer_raw_samples_without_double_counting(store, clock):
    clock.now = T0 + 2 * HOUR
    first = fill(store, T0, T0 + HOUR, value=lambda ts: 1.0)
    assert store.rollup(T0 + HOUR).ok  # rolls T0 .. T0+1h
    second = fill(store, T0 + HOUR, T0 + 2 * HOUR, value=lambda ts: 3.0)
    # since is outside the raw window: roll-ups up to T0+1h, raw after it
    assert store.series("gpu_temperature_celsius", T0 - 1, 2 * HOUR) == [(T0, pytest.approx(2.0))]
    assert len(first) == len(second)


def test_it_rolls_up_count_sum_min_max_and_last_per_minute(store, clock):
    store.insert([Sample("m", {}, v, T0 + i * 10) for i, v in enumerate([5.0, 1.0, 9.0, 2.0, 4.0, 3.0])])
    store.insert([Sample("m", {}, 100.0, T0 + 60)])  # the next minute, still open at rollup time
    assert store.rollup(T0 + 90).ok
    rows = list(store.db["rollups"].rows)
    assert rows == [{"minute": T0, "metric": "m", "labels": "{}", "count": 6, "sum": 24.0,
                     "min": 1.0, "max": 9.0, "last": 3.0}]


def test_rollup_is_idempotent(store, clock):
    fill(store, T0, T0 + HOUR)
    clock.now = T0 + HOUR
    assert store.rollup().ok
    first = list(store.db["rollups"].rows)
    again = store.rollup()
    later = store.rollup(T0 + HOUR + 30)  # same minute still open: nothing new is complete
    assert again.ok and later.ok
    assert list(store.db["rollups"].rows) == first
    assert len(first) == 60


def test_rollup_catches_samples_written_late_into_a_rolled_minute(store, clock):
    store.insert([Sample("m", {}, 1.0, T0 + 10)])
    assert store.rollup(T0 + 61).ok
    store.insert([Sample("m", {}, 3.0, T0 + 50)])  # e.g. a request record stamped before it was drained
    assert store.rollup(T0 + 125).ok
    assert store.db.execute("SELECT count, sum, last FROM rollups WHERE minute = ?", [T0]).fetchall() == [(2, 4.0, 3.0)]


def test_prune_removes_exactly_the_old_rows(store, clock):
    now = T0 + 20 * HOUR
    raw = [Sample("m", {}, 1.0, ts) for ts in (now - HOUR - 1, now - HOUR, now - HOUR + 1)]
    store.insert(raw)
    store.db["rollups"].insert_all(
        [{"minute": m, "metric": "m", "labels": "{}", "count": 1, "sum": 1.0, "min": 1.0, "max": 1.0, "last": 1.0}
         for m in (now - 10 * HOUR - 60, now - 10 * HOUR, now - 10 * HOUR + 60)])
    result = store.prune(now)
    assert result.ok and result.rows == 2
    assert [r[0] for r in store.db.execute("SELECT ts FROM samples ORDER BY ts")] == [now - HOUR, now - HOUR + 1]
    assert [r[0] for r in store.db.execute("SELECT minute FROM rollups ORDER BY minute")] == [
        now - 10 * HOUR, now - 10 * HOUR + 60]


def test_it_filters_by_exact_labels_and_groups_by_label_set(store, clock):
    clock.now = T0 + 600
    store.insert([Sample("gpu_utilization_percent", {"gpu": "0"}, 10.0, T0 + 1),
                  Sample("gpu_utilization_percent", {"gpu": "1"}, 30.0, T0 + 1),
                  Sample("gpu_utilization_percent", {"gpu": "1", "host": "a"}, 99.0, T0 + 1)])
    assert store.series("gpu_utilization_percent", T0, 60, labels={"gpu": "0"}) == [(T0, 10.0)]
    assert store.series("gpu_utilization_percent", T0, 60, labels={"gpu": "1"}) == [(T0, 30.0)]
    assert store.series("gpu_utilization_percent", T0, 60, labels={}) == []
    assert store.series("gpu_utilization_percent", T0, 60) == [(T0, pytest.approx(139.0 / 3))]
    grouped = store.series_by_labels("gpu_utilization_percent", T0, 60)
    assert grouped == {'{"gpu":"0"}': [(T0, 10.0)], '{"gpu":"1"}': [(T0, 30.0)],
                       '{"gpu":"1","host":"a"}': [(T0, 99.0)]}
    assert json.loads(next(iter(grouped))) == {"gpu": "0"}


def test_label_order_does_not_make_a_new_series(store, clock):
    clock.now = T0 + 600
    store.insert([Sample("m", {"b": "2", "a": "1"}, 1.0, T0), Sample("m", {"a": "1", "b": "2"}, 3.0, T0 + 1)])
    assert list(store.series_by_labels("m", T0, 60)) == ['{"a":"1","b":"2"}']


def test_latest_returns_the_newest_sample_then_the_last_rollup(store, clock):
    assert store.latest("m") is None
    store.insert([Sample("m", {"gpu": "0"}, 1.0, T0), Sample("m", {"gpu": "1"}, 2.0, T0 + 5),
                  Sample("m", {"gpu": "0"}, 3.0, T0 + 3)])
    assert store.latest("m", {"gpu": "0"}) == (T0 + 3, 3.0)
    assert store.latest("m") == (T0 + 5, 2.0)
    store.rollup(T0 + 60)
    store.prune(T0 + 2 * HOUR)
    assert store.latest("m", {"gpu": "0"}) == (T0, 3.0)  # the minute's last value, from the roll-up


def test_a_locked_database_skips_the_write_quickly_and_recovers(store, tmp_path):
    assert store.insert([Sample("m", {}, 1.0, T0)]).ok
    other = sqlite3.connect(str(store.path), isolation_level=None)
    other.execute("BEGIN EXCLUSIVE")
    try:
        started = time.monotonic()
        result = store.insert([Sample("m", {}, 2.0, T0 + 1)])
        waited = time.monotonic() - started
        assert not result and result.error == "locked"
        assert waited < 5  # bounded by busy_timeout (0.2 s here), not waiting for the lock holder
        assert store.last_error == "locked" and store.last_error_at == T0
        assert store.status()["message"] == "metrics store: locked, collection skipped"
        assert store.rollup(T0 + 120).error == "locked"
        assert store.prune(T0 + 120).error == "locked"
        assert store.series("m", T0 - 60, 60) == [(T0, 1.0)]  # WAL: reading still works
    finally:
        other.execute("ROLLBACK")
        other.close()
    assert store.insert([Sample("m", {}, 3.0, T0 + 2)]).ok
    assert store.status()["state"] == "ok"
    assert store.series("m", T0 - 60, 60, until=T0 + 60) == [(T0, 2.0)]  # 1.0 and 3.0: the skipped 2.0 is gone


def test_a_store_first_opened_while_locked_reports_and_migrates_later(tmp_path, clock):
    path = tmp_path / "metrics.db"
    open_db(path).close()  # an empty WAL database someone else is holding
    other = sqlite3.connect(str(path), isolation_level=None)
    other.execute("BEGIN EXCLUSIVE")
    store = MetricsStore(path, clock=clock, busy_timeout_s=0.1)
    try:
        assert store.insert([Sample("m", {}, 1.0, T0)]).error == "locked"
        assert store.series("m", T0 - 60, 60) == []
    finally:
        other.execute("ROLLBACK")
        other.close()
    assert store.insert([Sample("m", {}, 1.0, T0)]).ok
    assert store.latest("m") == (T0, 1.0)
    store.close()


def test_a_full_database_skips_the_write_and_says_so(store):
    assert store.insert([Sample("m", {}, 1.0, T0)]).ok
    pages = store.db.execute("PRAGMA page_count").fetchone()[0]
    store.db.execute(f"PRAGMA max_page_count = {pages}")  # this connection may not grow the file
    result = store.insert([Sample(f"metric_{i}", {"gpu": str(i)}, 1.0, T0 + i) for i in range(5000)])
    assert not result and result.error == "full"
    assert store.status()["message"] == "metrics store: full, collection skipped"
    assert store.db.execute("SELECT count(*) FROM samples").fetchone()[0] == 1  # rolled back whole


def test_each_thread_uses_its_own_connection(store):
    results = []
    thread = threading.Thread(target=lambda: (results.append(store.insert([Sample("m", {}, 1.0, T0)])), store.close()))
    thread.start()
    thread.join()
    assert results[0].ok
    assert store.latest("m") == (T0, 1.0)


def test_migrations_applied_twice_change_nothing(tmp_path):
    db = open_db(tmp_path / "m.db")
    migrations.apply(db)
    schema = db.schema
    migrations.apply(db)
    assert db.schema == schema
    assert [m.name for m in migrations.migrations.applied(db)] == ["samples", "rollups", "alert_events",
                                                                    "config_versions", "alert_silences",
                                                                    "model_benchmarks"]
    assert migrations.migrations.pending(db) == []
    assert ["metric", "ts"] in [i.columns[:2] for i in db["samples"].indexes]
    assert db["rollups"].pks == ["metric", "labels", "minute"]
    db.close()


def test_the_database_is_a_wal_file_in_a_created_directory(store, tmp_path):
    assert store.insert([Sample("m", {}, 1.0, T0)]).ok
    assert (tmp_path / "data" / "metrics.db").is_file()
    assert store.db.journal_mode == "wal"
    assert store.db.execute("PRAGMA foreign_keys").fetchone()[0] == 1
    assert store.db.execute("PRAGMA busy_timeout").fetchone()[0] == 200
    fresh = sqlite3.connect(str(store.path))
    assert fresh.execute("PRAGMA journal_mode").fetchone()[0] == "wal"  # persisted in the file
    fresh.close()
    assert store.size_bytes() > 0


def test_maintain_rolls_up_before_it_prunes(store, clock):
    samples = fill(store, T0, T0 + 2 * HOUR)
    clock.now = T0 + 2 * HOUR
    result = store.maintain()
    assert result.ok
    assert store.db.execute("SELECT min(ts) FROM samples").fetchone()[0] == T0 + HOUR
    assert store.db.execute("SELECT count(*), min(minute) FROM rollups").fetchone() == (120, T0)
    assert store.series("gpu_temperature_celsius", T0, HOUR) == expected_average(samples, HOUR)


def test_rollup_never_rewrites_a_minute_whose_raw_rows_are_being_pruned(store, clock):
    store.insert([Sample("m", {}, 1.0, T0 + 10), Sample("m", {}, 3.0, T0 + 50), Sample("m", {}, 5.0, T0 + 70)])
    assert store.rollup(T0 + 120).ok
    store.prune(T0 + HOUR + 30)  # removes T0+10 only: minute T0 is now half gone from the raw rows
    assert store.rollup(T0 + HOUR + 60).ok
    assert store.db.execute("SELECT count, sum FROM rollups WHERE minute = ?", [T0]).fetchone() == (2, 4.0)
