"""Eval metrics: validation of names, each metric's edge cases, final-answer extraction and the aggregate."""
from __future__ import annotations

import pytest

from ollama_server.jobs import eval_metrics
from ollama_server.jobs.eval_metrics import METRICS
from ollama_server.jobs.eval_metrics import MetricError
from ollama_server.jobs.eval_metrics import aggregate
from ollama_server.jobs.eval_metrics import compile_pattern
from ollama_server.jobs.eval_metrics import extract_final_answer
from ollama_server.jobs.eval_metrics import normalize_text
from ollama_server.jobs.eval_metrics import score_example
from ollama_server.jobs.eval_metrics import validate_metrics


# validate_metrics

def test_the_known_metrics_are_the_documented_five():
    assert METRICS == ("exact_match", "contains", "regex", "accuracy", "avg_loss")


def test_no_metrics_means_accuracy():
    assert validate_metrics([]) == ("accuracy",)


def test_duplicates_are_removed_keeping_the_first_order():
    assert validate_metrics(["contains", "accuracy", "contains", "avg_loss", "accuracy"]) == (
        "contains", "accuracy", "avg_loss")


def test_an_unknown_metric_is_named_and_the_known_ones_listed():
    with pytest.raises(MetricError) as raised:
        validate_metrics(["accuracy", "bleu"])
    message = str(raised.value)
    assert "unknown metric 'bleu'" in message
    assert "exact_match, contains, regex, accuracy, avg_loss" in message


def test_a_non_string_metric_is_refused():
    with pytest.raises(MetricError, match="unknown metric '3'"):
        validate_metrics([3])


def test_a_single_name_given_as_a_string_is_one_metric():
    assert validate_metrics("contains") == ("contains",)


# normalize_text

@pytest.mark.parametrize("raw, expected", [
    ("  Paris.  ", "paris"),
    ("New\n\tYork   City!", "new york city"),
    ("Really?!...", "really"),
    ("3.14", "3.14"),
    ("", ""),
    ("...", ""),
])
def test_normalize_text_strips_collapses_lowercases_and_drops_trailing_punctuation(raw, expected):
    assert normalize_text(raw) == expected


# exact_match and contains

def test_exact_match_ignores_case_spacing_and_a_final_period():
    assert score_example(["exact_match"], "  The  Eiffel tower. ", "the eiffel Tower")["exact_match"] is True
    assert score_example(["exact_match"], "The Eiffel tower is tall", "the eiffel tower")["exact_match"] is False


def test_contains_finds_the_normalized_reference_inside_the_prediction():
    scores = score_example(["contains"], "I think the capital is PARIS, France.", "Paris")
    assert scores == {"contains": True, "correct": True}
    assert score_example(["contains"], "Lyon", "Paris")["contains"] is False


def test_contains_never_finds_an_empty_reference():
    assert score_example(["contains"], "anything", "  ")["contains"] is False


def test_exact_match_of_two_empty_texts_is_true():
    assert score_example(["exact_match"], "", "")["exact_match"] is True


# regex

def test_regex_uses_the_given_pattern_on_the_raw_prediction():
    assert score_example(["regex"], "Answer: B", "B", pattern=r"Answer:\s*B\b")["regex"] is True
    assert score_example(["regex"], "answer: b", "B", pattern=r"Answer:\s*B\b")["regex"] is False
    assert score_example(["regex"], "answer: b", "B", pattern=r"(?i)Answer:\s*B\b")["regex"] is True


def test_regex_without_a_pattern_matches_the_reference_as_a_whole_word():
    assert score_example(["regex"], "So it is 4.", "4")["regex"] is True
    assert score_example(["regex"], "So it is 42.", "4")["regex"] is False


def test_regex_without_a_pattern_treats_the_reference_literally():
    assert score_example(["regex"], "I like c++ a lot", "C++")["regex"] is True
    assert score_example(["regex"], "ab", "a.")["regex"] is False  # "a." normalizes to "a", absent as a word
    assert score_example(["regex"], "x a.b y", "a.b")["regex"] is True
    assert score_example(["regex"], "x acb y", "a.b")["regex"] is False


def test_an_invalid_pattern_is_a_metric_error_naming_the_pattern():
    with pytest.raises(MetricError, match=r"pattern '\(unclosed' is not a valid regular expression"):
        score_example(["regex"], "text", "ref", pattern="(unclosed")


@pytest.mark.parametrize("pattern", [r"(a+)+$", r"(a*)*b", r"(?:x|a+)+", r"(\w+\s?)*$", r"((ab)*)+", r"(?=(a+)+)"])
def test_a_pattern_with_nested_repetition_is_refused_before_it_can_run(pattern):
    with pytest.raises(MetricError, match="repeats a group that itself repeats"):
        compile_pattern(pattern)


@pytest.mark.parametrize("pattern", [r"\b42\b", r"answer:\s*\d+", r"(ab){2}c+", r"^(yes|no)$", r"(?:\d{1,3})"])
def test_ordinary_patterns_compile(pattern):
    assert compile_pattern(pattern).pattern == pattern


def test_an_overlong_pattern_is_refused():
    with pytest.raises(MetricError, match="longer than 500 characters"):
        compile_pattern("a" * 501)


def test_an_empty_or_non_string_pattern_is_refused():
    with pytest.raises(MetricError, match="non-empty pattern"):
        compile_pattern("")
    with pytest.raises(MetricError, match="must be a string"):
        compile_pattern(["a"])


def test_regex_searches_only_the_bounded_start_of_a_huge_prediction(monkeypatch):
    monkeypatch.setattr(eval_metrics, "MAX_REGEX_TEXT_CHARS", 10)
    assert score_example(["regex"], "x" * 20 + "FOUND", "", pattern="FOUND")["regex"] is False
    assert score_example(["regex"], "FOUND" + "x" * 20, "", pattern="FOUND")["regex"] is True


# final answers and accuracy

@pytest.mark.parametrize("prediction, expected", [
    ("Natalia sold 48 clips, then 24.\n#### 72", "72"),
    (r"Thus the result is $\boxed{3/4}$.", "3/4"),
    ("2 + 3 = 5, so the answer is 5.", "5"),
    ("The answer: -2.50", "-2.50"),
    ("We have 3 apples and 4 pears, 7 fruits", "7"),
    ("Total $1,000 saved", "1,000"),
    ("8-3 leaves 5", "5"),
    ("x = -7", "-7"),
    ("#### 10 but the last number is 11", "10"),
    ("no digits at all", None),
])
def test_extract_final_answer(prediction, expected):
    assert extract_final_answer(prediction) == expected


@pytest.mark.parametrize("prediction, reference, correct", [
    ("#### 72", "72", True),
    ("The answer is 72.", "72.0", True),
    ("so 3/4 of them", "0.75", True),
    ("It comes to 1000", "1,000", True),
    (r"\boxed{1,000}", "1000", True),
    ("The answer is 71", "72", False),
    ("I don't know", "72", False),
    ("answer is 0.3333333", "1/3", True),
    ("answer is 0.33", "1/3", False),
    ("#### -5", "-5", True),
    ("steps... #### 18", "Janet sells 16 - 3 - 4 = 9 eggs... #### 18", True),
    ("steps... #### 19", "Janet sells 16 - 3 - 4 = 9 eggs... #### 18", False),
])
def test_accuracy_compares_the_final_number_with_the_reference_number(prediction, reference, correct):
    assert score_example(["accuracy"], prediction, reference)["accuracy"] is correct


def test_accuracy_falls_back_to_exact_match_for_a_non_numeric_reference():
    assert score_example(["accuracy"], "Paris.", "paris")["accuracy"] is True
    assert score_example(["accuracy"], "It is Paris", "paris")["accuracy"] is False


def test_a_division_by_zero_fraction_is_not_a_number():
    assert score_example(["accuracy"], "answer is 1/0", "1")["accuracy"] is False


# correct

def test_correct_is_the_accuracy_result_when_accuracy_is_requested():
    scores = score_example(["contains", "accuracy"], "The answer is 72, not 7", "7")
    assert scores == {"contains": True, "accuracy": False, "correct": False}


def test_correct_is_the_first_boolean_metric_without_accuracy():
    scores = score_example(["avg_loss", "exact_match", "contains"], "Paris, France", "Paris")
    assert scores == {"exact_match": False, "contains": True, "correct": False}


def test_correct_is_none_when_only_avg_loss_is_requested():
    assert score_example(["avg_loss"], "x", "y") == {"correct": None}


def test_score_example_refuses_unknown_metrics():
    with pytest.raises(MetricError, match="unknown metric 'f1'"):
        score_example(["f1"], "x", "y")


# aggregate

def test_aggregate_counts_and_averages_each_boolean_metric_to_four_decimals():
    samples = [
        {"accuracy": True, "contains": True, "correct": True},
        {"accuracy": False, "contains": True, "correct": False},
        {"accuracy": True, "contains": False, "correct": True},
    ]
    assert aggregate(samples, ["accuracy", "contains"]) == {
        "total_samples": 3, "correct": 2, "accuracy": 0.6667, "contains": 0.6667}


def test_aggregate_counts_a_sample_missing_a_metric_as_wrong():
    samples = [{"accuracy": True, "correct": True}, {"error": "generation failed"}]
    assert aggregate(samples, ["accuracy"]) == {"total_samples": 2, "correct": 1, "accuracy": 0.5}


def test_aggregate_means_the_loss_of_samples_that_have_one():
    samples = [{"loss": 1.0, "correct": None}, {"loss": 2.5}, {"loss": None}, {"loss": float("nan")}, {}]
    result = aggregate(samples, ["avg_loss"])
    assert result == {"total_samples": 5, "correct": 0, "avg_loss": 1.75}


def test_aggregate_avg_loss_is_none_when_no_sample_has_a_loss():
    assert aggregate([{"accuracy": True, "correct": True}], ["accuracy", "avg_loss"])["avg_loss"] is None


def test_aggregate_of_no_samples_has_no_means():
    assert aggregate([], ["accuracy"]) == {"total_samples": 0, "correct": 0, "accuracy": None}


def test_aggregate_of_scored_examples_matches_the_seed_result_shape():
    predictions = [("#### 4", "4"), ("#### 5", "4"), ("answer is 9", "9"), ("no idea", "1")]
    samples = [{**score_example(["accuracy", "avg_loss"], p, r), "loss": 0.5 * i}
               for i, (p, r) in enumerate(predictions)]
    assert aggregate(samples, ["accuracy", "avg_loss"]) == {
        "total_samples": 4, "correct": 2, "accuracy": 0.5, "avg_loss": 0.75}
