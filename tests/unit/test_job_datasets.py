"""Resolving a dataset_ref inside the datasets directory, and reading JSONL examples with line-numbered errors."""
from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from ollama_server.jobs import datasets
from ollama_server.jobs.datasets import DatasetError
from ollama_server.jobs.datasets import read_examples
from ollama_server.jobs.datasets import resolve_dataset


@pytest.fixture
def ds(tmp_path: Path) -> Path:
    root = tmp_path / "datasets"
    root.mkdir()
    return root


def write(path: Path, *lines: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(line + "\n" for line in lines), encoding="utf-8")
    return path


def rows(path: Path, *objs: dict) -> Path:
    return write(path, *(json.dumps(obj) for obj in objs))


# resolve_dataset

def test_it_resolves_a_bare_name_against_the_datasets_directory(ds):
    target = rows(ds / "math_eval.jsonl", {"prompt": "1+1", "answer": "2"})
    assert resolve_dataset("math_eval.jsonl", ds) == target.resolve()


def test_it_resolves_a_relative_path_in_a_subdirectory(ds):
    target = rows(ds / "math" / "gsm.jsonl", {"prompt": "1+1", "answer": "2"})
    assert resolve_dataset("math/gsm.jsonl", ds) == target.resolve()


def test_it_accepts_an_absolute_path_inside_the_datasets_directory(ds):
    target = rows(ds / "logic_eval.jsonl", {"prompt": "p", "answer": "a"})
    assert resolve_dataset(str(target), ds) == target.resolve()


def test_it_refuses_an_escape_through_dot_dot_as_outside_the_datasets_directory(ds):
    rows(ds.parent / "secret.jsonl", {"prompt": "p", "answer": "a"})
    with pytest.raises(DatasetError, match="dataset_ref '../secret.jsonl' is outside the datasets directory"):
        resolve_dataset("../secret.jsonl", ds)


def test_it_refuses_an_absolute_path_elsewhere(ds, tmp_path):
    other = rows(tmp_path / "elsewhere" / "x.jsonl", {"prompt": "p", "answer": "a"})
    with pytest.raises(DatasetError, match="outside the datasets directory"):
        resolve_dataset(str(other), ds)


def test_it_refuses_a_sibling_directory_whose_name_starts_like_the_datasets_directory(ds, tmp_path):
    other = rows(tmp_path / "datasets2" / "x.jsonl", {"prompt": "p", "answer": "a"})
    with pytest.raises(DatasetError, match="outside the datasets directory"):
        resolve_dataset(str(other), ds)


def test_it_refuses_a_symlink_that_points_out_of_the_datasets_directory(ds, tmp_path):
    outside = rows(tmp_path / "private.jsonl", {"prompt": "p", "answer": "a"})
    (ds / "link.jsonl").symlink_to(outside)
    with pytest.raises(DatasetError, match="outside the datasets directory"):
        resolve_dataset("link.jsonl", ds)


def test_it_follows_a_symlink_that_stays_inside(ds):
    real = rows(ds / "real.jsonl", {"prompt": "p", "answer": "a"})
    (ds / "alias.jsonl").symlink_to(real)
    assert resolve_dataset("alias.jsonl", ds) == real.resolve()


def test_it_works_when_the_datasets_directory_itself_is_a_symlink(ds, tmp_path):
    link = tmp_path / "ds_link"
    link.symlink_to(ds)
    target = rows(ds / "m.jsonl", {"prompt": "p", "answer": "a"})
    assert resolve_dataset(str(link / "m.jsonl"), link) == target.resolve()


def test_it_names_a_missing_file_as_not_found(ds):
    with pytest.raises(DatasetError, match="dataset_ref 'nope.jsonl' was not found"):
        resolve_dataset("nope.jsonl", ds)


def test_it_refuses_a_directory(ds):
    (ds / "dir.jsonl").mkdir()
    with pytest.raises(DatasetError, match="is a directory"):
        resolve_dataset("dir.jsonl", ds)


def test_it_refuses_a_fifo_rather_than_block_on_it(ds):
    os.mkfifo(ds / "pipe.jsonl")
    with pytest.raises(DatasetError, match="not a regular file"):
        resolve_dataset("pipe.jsonl", ds)


@pytest.mark.parametrize("ref", ["data.csv", "data.json", "data.jsonl.bak", "datasets"])
def test_it_refuses_a_name_not_ending_in_jsonl(ds, ref):
    with pytest.raises(DatasetError, match="must name a .jsonl file"):
        resolve_dataset(ref, ds)


@pytest.mark.parametrize("ref", ["", "   ", None, 42])
def test_it_refuses_an_empty_or_non_string_ref_naming_dataset_ref(ds, ref):
    with pytest.raises(DatasetError, match="dataset_ref must be a non-empty string"):
        resolve_dataset(ref, ds)


def test_it_refuses_a_nul_byte(ds):
    with pytest.raises(DatasetError, match="NUL"):
        resolve_dataset("a\x00.jsonl", ds)


def test_it_echoes_at_most_200_characters_of_a_long_ref(ds):
    ref = "x" * 5000 + ".jsonl"
    with pytest.raises(DatasetError) as raised:
        resolve_dataset(ref, ds)
    assert "x" * 200 in str(raised.value)
    assert "x" * 201 not in str(raised.value)


# read_examples

def test_it_reads_prompts_references_ids_and_keeps_other_keys_in_extra(ds):
    path = rows(ds / "m.jsonl",
                {"id": "q1", "prompt": "What is 2+2?", "answer": "4", "pattern": r"\b4\b"},
                {"question": "Capital of France?", "reference": "Paris", "topic": "geo"})
    first, second = read_examples(path)
    assert (first.index, first.line, first.id, first.prompt, first.reference) == (0, 1, "q1", "What is 2+2?", "4")
    assert first.extra == {"pattern": r"\b4\b"}
    assert (second.index, second.line, second.id, second.prompt, second.reference) == (
        1, 2, None, "Capital of France?", "Paris")
    assert second.extra == {"topic": "geo"}


def test_it_takes_the_first_prompt_and_answer_key_in_the_documented_order(ds):
    path = rows(ds / "m.jsonl", {"instruction": "later", "question": "first", "label": "l", "output": "o"})
    (example,) = read_examples(path)
    assert example.prompt == "first"
    assert example.reference == "o"
    assert example.extra == {"instruction": "later", "label": "l"}


def test_it_skips_an_empty_alpaca_input_and_uses_the_instruction(ds):
    path = rows(ds / "alpaca.jsonl", {"instruction": "Give three tips.", "input": "", "output": "1. Sleep"})
    (example,) = read_examples(path)
    assert example.prompt == "Give three tips."
    assert example.extra == {"input": ""}


def test_it_skips_blank_lines_but_keeps_counting_them(ds):
    path = write(ds / "m.jsonl", json.dumps({"prompt": "a", "answer": "1"}), "", "   ",
                 json.dumps({"prompt": "b", "answer": "2"}))
    examples = read_examples(path)
    assert [(e.index, e.line) for e in examples] == [(0, 1), (1, 4)]


def test_it_turns_numeric_and_boolean_references_and_ids_into_text(ds):
    path = rows(ds / "m.jsonl", {"id": 7, "prompt": "p", "answer": 42}, {"prompt": "q", "answer": 0.5},
                {"prompt": "r", "answer": True})
    assert [(e.id, e.reference) for e in read_examples(path)] == [("7", "42"), (None, "0.5"), (None, "true")]


def test_it_reports_malformed_json_on_line_3_as_line_3(ds):
    path = write(ds / "math_eval.jsonl", json.dumps({"prompt": "a", "answer": "1"}),
                 json.dumps({"prompt": "b", "answer": "2"}), '{"prompt": "c", "answer": ')
    with pytest.raises(DatasetError, match=r"^math_eval.jsonl line 3: not valid JSON \(") as raised:
        read_examples(path)
    assert "column" in str(raised.value)


def test_it_reports_a_line_that_is_not_an_object(ds):
    path = write(ds / "m.jsonl", json.dumps({"prompt": "a", "answer": "1"}), json.dumps(["a", "b"]))
    with pytest.raises(DatasetError, match="m.jsonl line 2: expected a JSON object, got an array"):
        read_examples(path)


def test_it_reports_a_missing_prompt_listing_the_accepted_keys(ds):
    path = rows(ds / "m.jsonl", {"text": "hello", "answer": "1"})
    with pytest.raises(DatasetError, match="m.jsonl line 1: no prompt \\(expected one of prompt, question, input, "
                                           "instruction\\)"):
        read_examples(path)


@pytest.mark.parametrize("value", ["", "  ", None])
def test_it_reports_an_empty_prompt(ds, value):
    path = rows(ds / "m.jsonl", {"prompt": value, "answer": "1"})
    with pytest.raises(DatasetError, match="m.jsonl line 1: the prompt is empty"):
        read_examples(path)


def test_it_reports_a_prompt_that_is_not_a_string(ds):
    path = rows(ds / "m.jsonl", {"prompt": ["a"], "answer": "1"})
    with pytest.raises(DatasetError, match="line 1: 'prompt' must be a non-empty string, got an array"):
        read_examples(path)


def test_it_reports_a_missing_reference_when_one_is_required(ds):
    path = rows(ds / "m.jsonl", {"prompt": "a", "answer": "1"}, {"prompt": "b"})
    with pytest.raises(DatasetError, match="m.jsonl line 2: no reference answer \\(expected one of answer"):
        read_examples(path)


def test_it_reports_an_empty_reference_when_one_is_required(ds):
    path = rows(ds / "m.jsonl", {"prompt": "a", "answer": " "})
    with pytest.raises(DatasetError, match="line 1: the reference answer is empty"):
        read_examples(path)


def test_it_allows_a_missing_reference_when_none_is_required(ds):
    path = rows(ds / "seeds.jsonl", {"prompt": "Write a math problem."})
    (example,) = read_examples(path, require_reference=False)
    assert example.reference is None


def test_it_reports_a_reference_of_the_wrong_type_even_when_none_is_required(ds):
    path = rows(ds / "m.jsonl", {"prompt": "a", "answer": {"x": 1}})
    with pytest.raises(DatasetError, match="line 1: 'answer' must be a string or a number, got an object"):
        read_examples(path, require_reference=False)


def test_it_reports_an_id_of_the_wrong_type(ds):
    path = rows(ds / "m.jsonl", {"id": [1], "prompt": "a", "answer": "1"})
    with pytest.raises(DatasetError, match="line 1: 'id' must be a string or a number"):
        read_examples(path)


def test_it_reports_invalid_utf8_with_its_line_number(ds):
    path = ds / "m.jsonl"
    path.write_bytes(json.dumps({"prompt": "a", "answer": "1"}).encode() + b"\n" + b'{"prompt": "\xff\xfe"}\n')
    with pytest.raises(DatasetError, match="m.jsonl line 2: not valid UTF-8"):
        read_examples(path)


def test_it_accepts_a_byte_order_mark_and_crlf_line_endings(ds):
    path = ds / "m.jsonl"
    path.write_bytes(b'\xef\xbb\xbf{"prompt": "a", "answer": "1"}\r\n{"prompt": "b", "answer": "2"}\r\n')
    assert [e.prompt for e in read_examples(path)] == ["a", "b"]


def test_a_line_separator_inside_a_string_does_not_split_the_line(ds):
    path = rows(ds / "m.jsonl", {"prompt": "one\u2028two", "answer": "1"}, {"prompt": "b", "answer": "2"})
    examples = read_examples(path)
    assert [(e.line, e.prompt) for e in examples] == [(1, "one\u2028two"), (2, "b")]


def test_it_refuses_a_file_larger_than_the_limit(ds, monkeypatch):
    path = rows(ds / "big.jsonl", *({"prompt": f"p{i}", "answer": str(i)} for i in range(50)))
    monkeypatch.setattr(datasets, "MAX_DATASET_BYTES", 100)
    with pytest.raises(DatasetError, match="big.jsonl is .* MiB; datasets are limited to"):
        read_examples(path)


def test_the_default_limit_is_64_mib():
    assert datasets.MAX_DATASET_BYTES == 64 * 1024 * 1024


def test_limit_stops_after_that_many_examples_without_validating_later_lines(ds):
    path = write(ds / "m.jsonl", json.dumps({"prompt": "a", "answer": "1"}), "",
                 json.dumps({"prompt": "b", "answer": "2"}), "this line is broken")
    examples = read_examples(path, limit=2)
    assert [e.prompt for e in examples] == ["a", "b"]
    with pytest.raises(DatasetError, match="line 4"):
        read_examples(path, limit=3)


def test_limit_zero_reads_nothing(ds):
    path = write(ds / "m.jsonl", "broken")
    assert read_examples(path, limit=0) == []


@pytest.mark.parametrize("limit", [-1, 1.5, True])
def test_it_refuses_a_limit_that_is_not_a_non_negative_integer(ds, limit):
    path = rows(ds / "m.jsonl", {"prompt": "a", "answer": "1"})
    with pytest.raises(DatasetError, match="limit must be a non-negative integer"):
        read_examples(path, limit=limit)


def test_it_reports_a_file_that_vanished_as_unreadable(ds):
    with pytest.raises(DatasetError, match="gone.jsonl: cannot be read"):
        read_examples(ds / "gone.jsonl")


def test_an_empty_file_has_no_examples(ds):
    path = ds / "empty.jsonl"
    path.write_text("")
    assert read_examples(path) == []


def test_it_reports_nesting_too_deep_for_the_parser(ds):
    path = write(ds / "m.jsonl", "[" * 100_000 + "]" * 100_000)
    with pytest.raises(DatasetError, match="line 1: not valid JSON"):
        read_examples(path)
