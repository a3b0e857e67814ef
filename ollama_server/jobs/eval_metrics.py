"""Eval metrics: scoring one prediction against its reference, and the run's aggregate (pure)."""
from __future__ import annotations

import functools
import math
import re
from fractions import Fraction
from typing import Iterable
from typing import Optional

try:  # the parser behind re, used to refuse patterns that backtrack exponentially
    import re._parser as sre_parse  # type: ignore[import-not-found]
except ImportError:  # Python < 3.11
    import sre_parse  # type: ignore[no-redef]

METRICS = ("exact_match", "contains", "regex", "accuracy", "avg_loss")
BOOLEAN_METRICS = ("exact_match", "contains", "regex", "accuracy")
MAX_PATTERN_CHARS = 500
# a pattern that passes the nesting check can still be polynomial in the text: bound the text it sees
MAX_REGEX_TEXT_CHARS = 20_000
NUMERIC_TOLERANCE = Fraction(1, 10**6)

_WHITESPACE = re.compile(r"\s+")
# a sign counts only where it cannot be subtraction ("8-3")
_NUMBER = r"(?:(?<![\w)])[-+])?(?:\d[\d,]*(?:\.\d+)?|\.\d+)(?:\s*/\s*\d+)?"
_NUMBER_RE = re.compile(_NUMBER)
_HASHES = re.compile(r"####\s*\$?\s*(" + _NUMBER + ")")
_BOXED = re.compile(r"\\boxed\s*\{\s*\$?\s*(" + _NUMBER + r")\s*\}")
_ANSWER_IS = re.compile(r"answer\s*(?:is|:|=)\s*[:=]?\s*\$?\s*(" + _NUMBER + ")", re.IGNORECASE)


class MetricError(ValueError):
    """An unknown metric or an unusable regex pattern; the message is for the caller."""


def validate_metrics(names: Iterable[str]) -> tuple[str, ...]:
    """The requested metric names in order without duplicates; empty means ("accuracy",)."""
    if isinstance(names, str):
        names = [names]
    chosen: list[str] = []
    for name in names:
        if not isinstance(name, str) or name not in METRICS:
            shown = name if isinstance(name, str) else repr(name)
            raise MetricError(f"metrics: unknown metric '{shown[:100]}'; known metrics are {', '.join(METRICS)}")
        if name not in chosen:
            chosen.append(name)
    return tuple(chosen) or ("accuracy",)


def normalize_text(text: str) -> str:
    """Stripped, whitespace collapsed, lowercased, without trailing . ! or ?."""
    return _WHITESPACE.sub(" ", text).strip().lower().rstrip(".!? ").strip()


def compile_pattern(pattern: str) -> re.Pattern:
    """A regex metric pattern compiled, or MetricError naming it (too long, invalid, or nested repetition)."""
    if not isinstance(pattern, str):
        raise MetricError("pattern: the regex metric's pattern must be a string")
    return _compile(pattern)


@functools.lru_cache(maxsize=256)
def _compile(pattern: str) -> re.Pattern:
    if not pattern:
        raise MetricError("pattern: the regex metric needs a non-empty pattern")
    shown = pattern[:100] + ("…" if len(pattern) > 100 else "")
    if len(pattern) > MAX_PATTERN_CHARS:
        raise MetricError(f"pattern '{shown}' is longer than {MAX_PATTERN_CHARS} characters")
    try:
        compiled = re.compile(pattern)
        tree = sre_parse.parse(pattern)
    except (re.error, RecursionError, OverflowError) as exc:
        raise MetricError(f"pattern '{shown}' is not a valid regular expression ({exc})") from None
    if _nested_repeat(tree, inside=False):
        raise MetricError(f"pattern '{shown}' repeats a group that itself repeats (like (a+)+), which can take "
                          "exponential time; rewrite it without a repetition inside a repetition")
    return compiled


def _nested_repeat(items, inside: bool) -> bool:
    """Whether a repetition (more than once) occurs inside another one, anywhere in the parsed pattern."""
    repeats = {sre_parse.MAX_REPEAT, sre_parse.MIN_REPEAT}
    for op, av in items:
        if op in repeats:
            _, high, body = av
            many = high > 1
            if many and inside:
                return True
            if _nested_repeat(body, inside or many):
                return True
        elif op == sre_parse.SUBPATTERN:
            if _nested_repeat(av[-1], inside):
                return True
        elif op == sre_parse.BRANCH:
            if any(_nested_repeat(alt, inside) for alt in av[1]):
                return True
        elif isinstance(av, tuple) and av and isinstance(av[-1], sre_parse.SubPattern):
            # assertions, atomic groups, possessive repeats, conditionals: look inside them too
            if _nested_repeat(av[-1], inside):
                return True
        elif isinstance(av, sre_parse.SubPattern):
            if _nested_repeat(av, inside):
                return True
    return False


def parse_number(text: str) -> Optional[Fraction]:
    """An integer, decimal or fraction (commas as thousands separators) as an exact Fraction, or None."""
    cleaned = text.strip().replace(",", "").replace(" ", "")
    try:
        if "/" in cleaned:
            top, bottom = cleaned.split("/", 1)
            return Fraction(Fraction(top), Fraction(bottom))
        return Fraction(cleaned)
    except (ValueError, ZeroDivisionError):
        return None


def extract_final_answer(prediction: str) -> Optional[str]:
    """The prediction's final numeric answer: after '####', in \\boxed{}, after 'answer is', else the last number."""
    for pattern in (_HASHES, _BOXED, _ANSWER_IS):
        found = pattern.findall(prediction)
        if found:
            return found[-1].strip()
    numbers = _NUMBER_RE.findall(prediction)
    return numbers[-1].strip() if numbers else None


def reference_number(reference: str) -> Optional[Fraction]:
    """The reference's number: the whole reference if numeric, else after '####' or in \\boxed{}; else None."""
    stripped = reference.strip().rstrip(".").lstrip("$").rstrip("%").strip()
    if _NUMBER_RE.fullmatch(stripped):
        return parse_number(stripped)
    # a worked solution ending "#### 42" (GSM8K) has its number marked; free text is not numeric
    for pattern in (_HASHES, _BOXED):
        found = pattern.findall(reference)
        if found:
            return parse_number(found[-1])
    return None


def numbers_equal(left: Fraction, right: Fraction) -> bool:
    """Exact equality, or within a relative 1e-6 (a decimal printed from a float)."""
    return left == right or abs(left - right) <= NUMERIC_TOLERANCE * max(1, abs(right))


def score_example(metrics: Iterable[str], prediction: str, reference: str,
                  pattern: Optional[str] = None) -> dict:
    """Each requested boolean metric for one prediction, plus "correct" (accuracy if asked, else the first)."""
    chosen = validate_metrics(metrics)
    prediction = prediction or ""
    reference = reference or ""
    scores: dict = {}
    for name in chosen:
        if name == "exact_match":
            scores[name] = exact_match(prediction, reference)
        elif name == "contains":
            scores[name] = contains(prediction, reference)
        elif name == "regex":
            scores[name] = regex_match(prediction, reference, pattern)
        elif name == "accuracy":
            scores[name] = accuracy(prediction, reference)
    if "accuracy" in scores:
        scores["correct"] = scores["accuracy"]
    else:
        booleans = [name for name in chosen if name in BOOLEAN_METRICS]
        scores["correct"] = scores[booleans[0]] if booleans else None  # avg_loss alone judges nothing
    return scores


def exact_match(prediction: str, reference: str) -> bool:
    """Normalized equality."""
    return normalize_text(prediction) == normalize_text(reference)


def contains(prediction: str, reference: str) -> bool:
    """The normalized reference occurs in the normalized prediction (an empty reference is never found)."""
    wanted = normalize_text(reference)
    return bool(wanted) and wanted in normalize_text(prediction)


def regex_match(prediction: str, reference: str, pattern: Optional[str] = None) -> bool:
    """re.search of the pattern in the prediction; with no pattern, the reference as a whole word, any case."""
    if pattern is None:
        wanted = normalize_text(reference)
        if not wanted:
            return False
        # the literal reference must stand alone: "4" is not found in "42"
        literal = re.compile(r"(?<!\w)" + re.escape(wanted) + r"(?!\w)")
        return literal.search(normalize_text(prediction)[:MAX_REGEX_TEXT_CHARS]) is not None
    return compile_pattern(pattern).search(prediction[:MAX_REGEX_TEXT_CHARS]) is not None


def accuracy(prediction: str, reference: str) -> bool:
    """The prediction's final number equals the reference's; exact_match when the reference is not numeric."""
    expected = reference_number(reference)
    if expected is None:
        return exact_match(prediction, reference)
    answer = extract_final_answer(prediction)
    got = parse_number(answer) if answer is not None else None
    return got is not None and numbers_equal(got, expected)


def aggregate(samples: list[dict], metrics: Iterable[str]) -> dict:
    """The run's totals: samples, correct count, each boolean metric's mean, and avg_loss when asked (4 decimals)."""
    chosen = validate_metrics(metrics)
    total = len(samples)
    result: dict = {"total_samples": total, "correct": sum(1 for s in samples if s.get("correct") is True)}
    for name in chosen:
        if name in BOOLEAN_METRICS:
            # a sample without the metric (it failed to score) counts as wrong, not as absent
            hits = sum(1 for s in samples if s.get(name) is True)
            result[name] = round(hits / total, 4) if total else None
    if "avg_loss" in chosen:
        losses = [float(s["loss"]) for s in samples if is_number(s.get("loss"))]
        result["avg_loss"] = round(sum(losses) / len(losses), 4) if losses else None
    return result


def is_number(value: object) -> bool:
    """A finite int or float that is not a bool."""
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)
