"""Shard writing: rollover, numbering across writers and dates, atomic publication, resume, names, de-dup keys."""
from __future__ import annotations

import json
from datetime import date
from pathlib import Path

import pytest

from ollama_server.jobs import shards as shards_module
from ollama_server.jobs.shards import ShardError
from ollama_server.jobs.shards import ShardWriter
from ollama_server.jobs.shards import count_lines
from ollama_server.jobs.shards import dedupe_key
from ollama_server.jobs.shards import shard_path

DAY = date(2025, 11, 22)


def on(day: date):
    return lambda: day


def record(i: int) -> dict:
    return {"instruction": f"q{i}", "input": "", "output": f"a{i}", "source": "model", "strategy": "self_instruct",
            "model_id": "m", "job_id": "datagen_1"}


def listing(directory: Path) -> list[str]:
    return sorted(p.name for p in directory.iterdir())


def read(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]


def test_it_rolls_over_to_a_new_shard_at_max_examples(tmp_path):
    writer = ShardWriter(tmp_path, "datagen_1", max_examples=2, today=on(DAY))
    for i in range(5):
        writer.add(record(i))
    assert writer.finished == ["shard_2025-11-22_001.jsonl", "shard_2025-11-22_002.jsonl"]
    writer.close()
    assert writer.finished == ["shard_2025-11-22_001.jsonl", "shard_2025-11-22_002.jsonl",
                               "shard_2025-11-22_003.jsonl"]
    assert [r["instruction"] for r in read(tmp_path / "shard_2025-11-22_001.jsonl")] == ["q0", "q1"]
    assert [r["instruction"] for r in read(tmp_path / "shard_2025-11-22_003.jsonl")] == ["q4"]
    assert listing(tmp_path) == writer.finished  # no partial left behind


def test_a_shard_in_progress_is_only_a_hidden_partial_named_for_its_job(tmp_path):
    writer = ShardWriter(tmp_path, "datagen_7", max_examples=3, today=on(DAY))
    writer.add(record(0))
    assert listing(tmp_path) == [".datagen_7.shard_2025-11-22_001.jsonl.partial"]
    assert writer.finished == []
    assert writer.pending_lines == 1
    writer.close()
    assert listing(tmp_path) == ["shard_2025-11-22_001.jsonl"]


def test_a_full_shard_is_published_at_once_and_never_written_again(tmp_path):
    writer = ShardWriter(tmp_path, "datagen_1", max_examples=2, today=on(DAY))
    writer.add(record(0))
    writer.add(record(1))
    first = tmp_path / "shard_2025-11-22_001.jsonl"
    before = first.read_bytes()
    writer.add(record(2))
    writer.close()
    assert first.read_bytes() == before
    assert count_lines(first) == 2


def test_closing_with_nothing_written_creates_no_shard(tmp_path):
    writer = ShardWriter(tmp_path / "out", "datagen_1", max_examples=2, today=on(DAY))
    writer.close()
    assert writer.finished == []
    assert not (tmp_path / "out").exists()


def test_close_twice_publishes_once(tmp_path):
    writer = ShardWriter(tmp_path, "datagen_1", max_examples=5, today=on(DAY))
    writer.add(record(0))
    writer.close()
    writer.close()
    assert writer.finished == ["shard_2025-11-22_001.jsonl"]


def test_numbering_continues_after_the_highest_shard_of_the_same_date(tmp_path):
    (tmp_path / "shard_2025-11-22_004.jsonl").write_text("{}\n")
    (tmp_path / "shard_2025-11-21_009.jsonl").write_text("{}\n")  # another date does not count
    (tmp_path / "notes.txt").write_text("x")
    writer = ShardWriter(tmp_path, "datagen_1", max_examples=1, today=on(DAY))
    writer.add(record(0))
    assert writer.finished == ["shard_2025-11-22_005.jsonl"]


def test_numbering_continues_across_writers(tmp_path):
    first = ShardWriter(tmp_path, "datagen_1", max_examples=1, today=on(DAY))
    first.add(record(0))
    first.add(record(1))
    second = ShardWriter(tmp_path, "datagen_2", max_examples=1, today=on(DAY))
    second.add(record(2))
    assert first.finished == ["shard_2025-11-22_001.jsonl", "shard_2025-11-22_002.jsonl"]
    assert second.finished == ["shard_2025-11-22_003.jsonl"]


def test_numbering_restarts_at_one_on_a_new_date(tmp_path):
    days = iter([DAY, DAY, date(2025, 11, 23)])
    writer = ShardWriter(tmp_path, "datagen_1", max_examples=1, today=lambda: next(days))
    for i in range(3):
        writer.add(record(i))
    assert writer.finished == ["shard_2025-11-22_001.jsonl", "shard_2025-11-22_002.jsonl",
                               "shard_2025-11-23_001.jsonl"]


def test_a_shard_keeps_the_date_it_was_opened_on(tmp_path):
    days = iter([DAY, date(2025, 11, 23)])
    writer = ShardWriter(tmp_path, "datagen_1", max_examples=10, today=lambda: next(days))
    writer.add(record(0))
    writer.add(record(1))
    writer.close()
    assert writer.finished == ["shard_2025-11-22_001.jsonl"]


def test_two_jobs_writing_at_once_never_take_the_same_number(tmp_path):
    a = ShardWriter(tmp_path, "datagen_a", max_examples=2, today=on(DAY))
    b = ShardWriter(tmp_path, "datagen_b", max_examples=2, today=on(DAY))
    a.add(record(0))
    b.add(record(1))  # sees a's partial and reserves the next number
    a.close()
    b.close()
    assert a.finished == ["shard_2025-11-22_001.jsonl"]
    assert b.finished == ["shard_2025-11-22_002.jsonl"]


def test_publishing_takes_the_next_free_number_rather_than_overwrite(tmp_path):
    writer = ShardWriter(tmp_path, "datagen_1", max_examples=5, today=on(DAY))
    writer.add(record(0))
    # someone else (another process) published the number this writer had chosen
    (tmp_path / "shard_2025-11-22_001.jsonl").write_text('{"theirs": true}\n')
    writer.close()
    assert writer.finished == ["shard_2025-11-22_002.jsonl"]
    assert read(tmp_path / "shard_2025-11-22_001.jsonl") == [{"theirs": True}]
    assert read(tmp_path / "shard_2025-11-22_002.jsonl")[0]["instruction"] == "q0"


def test_publishing_falls_back_to_rename_without_hard_links(tmp_path, monkeypatch):
    def no_links(src, dst):
        raise OSError(1, "Operation not permitted")
    monkeypatch.setattr(shards_module.os, "link", no_links)
    writer = ShardWriter(tmp_path, "datagen_1", max_examples=1, today=on(DAY))
    writer.add(record(0))
    assert listing(tmp_path) == ["shard_2025-11-22_001.jsonl"]


def test_it_adds_the_writers_job_id_to_a_record_without_one(tmp_path):
    writer = ShardWriter(tmp_path, "datagen_9", max_examples=1, today=on(DAY))
    writer.add({"instruction": "i", "input": "", "output": "o"})
    assert read(tmp_path / "shard_2025-11-22_001.jsonl") == [
        {"instruction": "i", "input": "", "output": "o", "job_id": "datagen_9"}]


def test_it_writes_unicode_as_is_one_record_per_line(tmp_path):
    writer = ShardWriter(tmp_path, "datagen_1", max_examples=5, today=on(DAY))
    writer.add({**record(0), "output": "naïve\nline two"})
    writer.close()
    text = (tmp_path / "shard_2025-11-22_001.jsonl").read_text(encoding="utf-8")
    assert "naïve" in text
    assert text.count("\n") == 1


def test_a_failure_inside_the_context_leaves_the_partial_unpublished(tmp_path):
    with pytest.raises(RuntimeError):
        with ShardWriter(tmp_path, "datagen_1", max_examples=5, today=on(DAY)) as writer:
            writer.add(record(0))
            raise RuntimeError("engine failed")
    assert listing(tmp_path) == [".datagen_1.shard_2025-11-22_001.jsonl.partial"]


def test_leaving_the_context_normally_publishes(tmp_path):
    with ShardWriter(tmp_path, "datagen_1", max_examples=5, today=on(DAY)) as writer:
        writer.add(record(0))
    assert writer.finished == ["shard_2025-11-22_001.jsonl"]


def test_resume_deletes_only_this_jobs_partial_and_keeps_completed_shards(tmp_path):
    crashed = ShardWriter(tmp_path, "datagen_1", max_examples=2, today=on(DAY))
    for i in range(3):
        crashed.add(record(i))  # one shard published, one partial in progress when the "crash" happens
    other = ShardWriter(tmp_path, "datagen_2", max_examples=5, today=on(DAY))
    other.add({**record(9), "job_id": "datagen_2"})
    restarted = ShardWriter(tmp_path, "datagen_1", max_examples=2, today=on(DAY))
    assert restarted.resume(["shard_2025-11-22_001.jsonl"]) == ["shard_2025-11-22_001.jsonl"]
    assert listing(tmp_path) == [".datagen_2.shard_2025-11-22_003.jsonl.partial", "shard_2025-11-22_001.jsonl"]
    restarted.add(record(2))
    restarted.close()
    assert restarted.finished == ["shard_2025-11-22_001.jsonl", "shard_2025-11-22_004.jsonl"]


def test_resume_finds_a_shard_published_just_before_the_crash(tmp_path):
    crashed = ShardWriter(tmp_path, "datagen_1", max_examples=1, today=on(DAY))
    crashed.add(record(0))
    crashed.add(record(1))  # the job recorded only the first before dying
    (tmp_path / "shard_2025-11-22_003.jsonl").write_text(json.dumps({"job_id": "datagen_other"}) + "\n")
    restarted = ShardWriter(tmp_path, "datagen_1", max_examples=1, today=on(DAY))
    assert restarted.resume(["shard_2025-11-22_001.jsonl"]) == [
        "shard_2025-11-22_001.jsonl", "shard_2025-11-22_002.jsonl"]
    assert restarted.finished == ["shard_2025-11-22_001.jsonl", "shard_2025-11-22_002.jsonl"]


def test_resume_keeps_a_completed_shard_the_trainer_already_moved_away(tmp_path):
    restarted = ShardWriter(tmp_path, "datagen_1", max_examples=1, today=on(DAY))
    assert restarted.resume(["shard_2025-11-22_001.jsonl"]) == ["shard_2025-11-22_001.jsonl"]


def test_resume_treats_a_job_id_with_glob_characters_literally(tmp_path):
    stranger = tmp_path / ".datagen_1x.shard_2025-11-22_001.jsonl.partial"
    stranger.write_text("{}\n")
    writer = ShardWriter(tmp_path, "datagen_[1]", max_examples=1, today=on(DAY))
    writer.resume([])
    assert stranger.exists()


@pytest.mark.parametrize("bad", [0, -1, 1.5, True])
def test_max_examples_must_be_a_positive_integer(tmp_path, bad):
    with pytest.raises(ValueError, match="max_examples must be a positive integer"):
        ShardWriter(tmp_path, "datagen_1", max_examples=bad)


@pytest.mark.parametrize("bad", ["", "a/b", "..", "x\x00"])
def test_a_job_id_that_cannot_be_part_of_a_file_name_is_refused(tmp_path, bad):
    with pytest.raises(ValueError, match="cannot be part of a file name"):
        ShardWriter(tmp_path, bad, max_examples=1)


def test_add_refuses_a_record_that_is_not_a_dict(tmp_path):
    writer = ShardWriter(tmp_path, "datagen_1", max_examples=1)
    with pytest.raises(TypeError):
        writer.add(["not", "a", "dict"])


# shard_path

def test_shard_path_accepts_a_shard_name(tmp_path):
    assert shard_path(tmp_path, "shard_2025-11-22_001.jsonl") == tmp_path / "shard_2025-11-22_001.jsonl"


@pytest.mark.parametrize("name", [
    "../shard_2025-11-22_001.jsonl", "sub/shard_2025-11-22_001.jsonl", "shard_2025-11-22_01.jsonl",
    "shard_2025-11-22_001.jsonl.partial", ".datagen_1.shard_2025-11-22_001.jsonl.partial", "db.sqlite",
    "shard_2025-11-22_001.json", "shard_20251122_001.jsonl", "", "shard_2025-11-22_001.jsonl\n",
])
def test_shard_path_refuses_anything_but_a_shard_name(tmp_path, name):
    with pytest.raises(ShardError, match="is not of the form shard_<YYYY-MM-DD>_<NNN>.jsonl"):
        shard_path(tmp_path, name)


def test_shard_path_refuses_an_impossible_date(tmp_path):
    with pytest.raises(ShardError, match="invalid date"):
        shard_path(tmp_path, "shard_2025-13-40_001.jsonl")


def test_shard_path_refuses_a_non_string(tmp_path):
    with pytest.raises(ShardError):
        shard_path(tmp_path, None)


def test_shard_path_refuses_a_symlink_pointing_out_of_the_shard_directory(tmp_path):
    shards_dir = tmp_path / "train_shards_out"
    shards_dir.mkdir()
    secret = tmp_path / "secret.txt"
    secret.write_text("x")
    (shards_dir / "shard_2025-11-22_001.jsonl").symlink_to(secret)
    with pytest.raises(ShardError, match="outside the shard directory"):
        shard_path(shards_dir, "shard_2025-11-22_001.jsonl")


def test_shard_path_echoes_at_most_200_characters(tmp_path):
    with pytest.raises(ShardError) as raised:
        shard_path(tmp_path, "y" * 1000)
    assert "y" * 201 not in str(raised.value)


# count_lines and dedupe_key

def test_count_lines_counts_non_blank_lines_including_an_unterminated_last_one(tmp_path):
    path = tmp_path / "f.jsonl"
    path.write_text('{"a": 1}\n\n{"a": 2}\n{"a": 3}')
    assert count_lines(path) == 3


def test_count_lines_of_a_missing_file_raises(tmp_path):
    with pytest.raises(FileNotFoundError):
        count_lines(tmp_path / "missing.jsonl")


@pytest.mark.parametrize("a, b", [
    ("What is 2+2?", "  what IS 2+2 "),
    ("Name three colours.", "name three colours"),
    ("Hello,   world!", "hello world"),
    ("Don't stop", "dont stop"),
    ("ＡＢＣ", "abc"),
])
def test_dedupe_key_is_the_same_for_texts_differing_in_case_spacing_and_punctuation(a, b):
    assert dedupe_key(a) == dedupe_key(b)


def test_dedupe_key_keeps_words_apart():
    assert dedupe_key("Name three colours") != dedupe_key("Name four colours")
    assert dedupe_key("a-b") == "a b"
