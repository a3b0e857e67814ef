"""The regex -> GBNF converter: what each supported construct becomes, that llama.cpp builds every result,
and that every construct outside the subset is refused by name."""
import pytest

from ollama_server.engine.grammar_checker import GrammarChecker
from ollama_server.engine.regex_grammar import RegexError
from ollama_server.engine.regex_grammar import choice_to_gbnf
from ollama_server.engine.regex_grammar import regex_to_gbnf

ACCEPTED = [
    ("abc", 'root ::= "a" "b" "c"'),
    ("^[a-z]+$", "root ::= [a-z]+"),
    (r"\Ayes\Z", 'root ::= "y" "e" "s"'),
    ("^a|^b$", 'root ::= ( "a" | "b" )'),
    (r"\d{3}-\d{2,4}", 'root ::= [0-9]{3} "\\x2D" [0-9]{2,4}'),
    ("x{2,}", 'root ::= "x"{2,}'),
    ("x{,3}", 'root ::= "x"{0,3}'),
    ("(cat|dog)s?", 'root ::= ( ( "c" "a" "t" | "d" "o" "g" ) ) "s"?'),
    ("(?:ab)*", 'root ::= ( "a" "b" )*'),
    ("(?P<word>ab)+?", 'root ::= ( "a" "b" )+'),
    ("(?<word>a)", 'root ::= ( "a" )'),
    ("a.b", 'root ::= "a" [^\\x0A] "b"'),
    (r"[\w.]+@x\.org", 'root ::= [a-zA-Z0-9_.]+ "@" "x" "." "o" "r" "g"'),
    (r"[^\]\\-]", "root ::= [^\\x5D\\x5C\\x2D]"),
    ("[]a]", "root ::= [\\x5Da]"),
    ("[a-]", "root ::= [a\\x2D]"),
    (r"\s\S\D\W", "root ::= [ \\x09-\\x0D] [^ \\x09-\\x0D] [^0-9] [^a-zA-Z0-9_]"),
    (r"\x41\u00e9\n\t", 'root ::= "A" "é" "\\x0A" "\\x09"'),
    ('"q"', 'root ::= "\\x22" "q" "\\x22"'),
    ("a{", 'root ::= "a" "{"'),
    ("a|", 'root ::= ( "a" | "" )'),
    ("", 'root ::= ""'),
    ("[А-я]", "root ::= [А-я]"),
]

REFUSED = [
    ("(?=a)a", "lookahead"),
    ("(?!a)b", "negative lookahead"),
    ("(?<=a)b", "lookbehind"),
    ("(?<!a)b", "negative lookbehind"),
    ("(a)\\1", "backreference"),
    ("(?P<x>a)(?P=x)", "backreference"),
    ("\\bword\\b", "word boundary"),
    ("(?i)abc", "inline flags"),
    ("(?>ab)", "atomic groups"),
    ("a*+", "possessive"),
    ("a^b", "anchor '^'"),
    ("a$b", "anchor '$'"),
    ("[[:alpha:]]", "POSIX classes"),
    ("[\\D]", "negated escape"),
    ("\\p{L}", "Unicode properties"),
    ("a**", "multiple repeat"),
    ("*a", "nothing to repeat"),
    ("(ab", "unclosed '('"),
    ("ab)", "unbalanced ')'"),
    ("[ab", "unterminated character class"),
    ("a{3,2}", "min > max"),
    ("[z-a]", "bad character range"),
    ("\\q", "bad escape \\q"),
    ("a\\", "lone backslash"),
]


@pytest.mark.parametrize("pattern,grammar", ACCEPTED, ids=[a[0] or "empty" for a in ACCEPTED])
def test_each_supported_construct_becomes_its_gbnf(pattern, grammar):
    assert regex_to_gbnf(pattern) == grammar


def test_llama_cpp_builds_every_converted_grammar():
    checker = GrammarChecker()
    try:
        problems = {pattern: checker.check(regex_to_gbnf(pattern)) for pattern, _ in ACCEPTED}
        problems["choice"] = checker.check(choice_to_gbnf(["yes", 'say "no"', "", "a\nb"]))
    finally:
        checker.close()
    assert {pattern: why for pattern, why in problems.items() if why} == {}


@pytest.mark.parametrize("pattern,construct", REFUSED, ids=[r[0] for r in REFUSED])
def test_each_construct_outside_the_subset_is_refused_by_name(pattern, construct):
    with pytest.raises(RegexError) as caught:
        regex_to_gbnf(pattern)
    assert construct in str(caught.value)


def test_repetition_counts_beyond_the_limit_are_refused_naming_the_setting():
    assert regex_to_gbnf("a{500}b{500}", max_repetition=1000)
    with pytest.raises(RegexError) as caught:
        regex_to_gbnf("a{500}b{501}", max_repetition=1000)
    assert "max_schema_repetition" in str(caught.value)


def test_a_choice_becomes_an_alternation_of_escaped_literals():
    assert choice_to_gbnf(["yes", 'say "no"', ""]) == 'root ::= "yes" | "say \\x22no\\x22" | ""'


def test_an_empty_choice_list_is_refused():
    with pytest.raises(RegexError):
        choice_to_gbnf([])
