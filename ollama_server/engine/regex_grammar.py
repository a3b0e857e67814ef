"""Pure converters to GBNF: a regular-expression subset, and a choice of literal strings.

The subset: literals and escapes, `.`, character classes (ranges, negation, \\d \\w \\s), groups
(capturing, `(?:...)`, named), alternation, the quantifiers ? * + {m} {m,} {m,n} (lazy forms too:
laziness does not change which whole strings match), and anchors ^ $ \\A \\Z at the ends of the
pattern, which are ignored (the whole output must match anyway). Anything else (lookaround,
backreferences, word boundaries, inline flags, possessive quantifiers...) raises RegexError naming
the construct, because dropping it would silently accept output the caller's regex refuses.
\\d, \\w and \\s are their ASCII meanings.
"""
from __future__ import annotations

import re
from typing import Sequence

# A quantifier in braces; anything else after '{' makes the brace a literal, as in Python's re.
_BRACES = re.compile(r"\{(\d*)(?:(,)(\d*))?\}")
_CLASS_ESCAPES = {"d": [("0", "9")], "w": [("a", "z"), ("A", "Z"), ("0", "9"), ("_", "_")],
                  "s": [(" ", " "), ("\t", "\r")]}  # \t \n \v \f \r are one run of code points
_CHAR_ESCAPES = {"n": "\n", "t": "\t", "r": "\r", "f": "\f", "v": "\v", "a": "\a", "0": "\0"}
_HEX_ESCAPES = {"x": 2, "u": 4, "U": 8}
_REFUSED_ESCAPES = {"b": "the word boundary \\b", "B": "the non-boundary \\B", "N": "named characters \\N{...}",
                    "g": "the backreference \\g<...>", "G": "\\G", "p": "Unicode properties \\p{...}",
                    "P": "Unicode properties \\P{...}", "k": "the backreference \\k<...>"}
_START_ANCHORS = ("^", "\\A")
_END_ANCHORS = ("$", "\\Z", "\\z")
_SPECIAL = set('"\\[]-^')


class RegexError(ValueError):
    """A pattern outside the supported subset, or malformed; the message names the construct."""


def _char(c: str) -> str:
    """One character as GBNF writes it inside a literal or a class."""
    code = ord(c)
    if c in _SPECIAL or code < 0x20 or code == 0x7F:
        return f"\\x{code:02X}"
    return c


def gbnf_literal(text: str) -> str:
    """A GBNF string literal matching exactly `text`."""
    return '"' + "".join(_char(c) for c in text) + '"'


def choice_to_gbnf(choices: Sequence[str]) -> str:
    """A grammar whose only sentences are the given strings."""
    if not choices:
        raise RegexError("give at least one choice")
    return "root ::= " + " | ".join(gbnf_literal(c) for c in choices)


def regex_to_gbnf(pattern: str, max_repetition: int = 1000) -> str:
    """A grammar matching exactly the strings `pattern` fully matches; RegexError outside the subset or when
    its {m,n} counts add up to more than `max_repetition` (each count becomes that many copies in the sampler)."""
    return "root ::= " + _Parser(pattern, max_repetition).parse()


class _Parser:
    """Recursive descent over the pattern, writing a single GBNF expression."""

    def __init__(self, pattern: str, max_repetition: int):
        self.p = pattern
        self.i = 0
        self.max_repetition = max_repetition
        self.repetition = 0

    def fail(self, what: str) -> RegexError:
        return RegexError(f"{what} (at position {self.i} of the regex) is not supported")

    def peek(self, n: int = 1) -> str:
        return self.p[self.i:self.i + n]

    def parse(self) -> str:
        expr = self.alternation(top=True)
        if self.i < len(self.p):
            raise RegexError(f"unbalanced ')' at position {self.i} of the regex")
        return expr

    def alternation(self, top: bool) -> str:
        branches = [self.sequence(top)]
        while self.peek() == "|":
            self.i += 1
            branches.append(self.sequence(top))
        return branches[0] if len(branches) == 1 else "( " + " | ".join(branches) + " )"

    def _anchor(self, anchors: tuple[str, ...]) -> str:
        return next((a for a in anchors if self.p.startswith(a, self.i)), "")

    def sequence(self, top: bool) -> str:
        items: list[str] = []
        start = self._anchor(_START_ANCHORS)
        if top and start:
            self.i += len(start)  # ignored: the whole output must match from its start anyway
        while self.i < len(self.p) and self.p[self.i] not in "|)":
            end = self._anchor(_END_ANCHORS)
            after = self.i + len(end)
            if end and top and (after == len(self.p) or self.p[after] == "|"):
                self.i = after  # ignored: the whole output must match to its end anyway
                continue
            anchor = end or self._anchor(_START_ANCHORS)
            if anchor:
                raise self.fail(f"the anchor '{anchor}' anywhere but the start or end of the pattern")
            items.append(self.quantified(self.atom()))
        return " ".join(items) if items else '""'

    def atom(self) -> str:
        c = self.p[self.i]
        if c == "(":
            return self.group()
        if c == "[":
            return self.char_class()
        if c == ".":
            self.i += 1
            return "[^\\x0A]"  # no DOTALL: any character but a newline
        if c == "\\":
            return self.escape()
        if c in "*+?" or (c == "{" and _BRACES.match(self.p, self.i)):
            raise RegexError(f"nothing to repeat at position {self.i} of the regex")
        self.i += 1
        return gbnf_literal(c)

    def group(self) -> str:
        start = self.i
        self.i += 1
        if self.peek() == "?":
            head = self.p[self.i:self.i + 3]
            if head.startswith("?:"):
                self.i += 2
            elif head.startswith(("?P<", "?<")) and self.peek(3) not in ("?<=", "?<!"):
                close = self.p.find(">", self.i)
                if close < 0:
                    raise RegexError(f"unterminated group name at position {self.i} of the regex")
                self.i = close + 1  # a named group matches what an unnamed one does
            else:
                names = {"?=": "lookahead '(?='", "?!": "negative lookahead '(?!'", "?<=": "lookbehind '(?<='",
                         "?<!": "negative lookbehind '(?<!'", "?P=": "the backreference '(?P=...)'",
                         "?#": "comments '(?#...)'", "?(": "conditionals '(?(...)'", "?>": "atomic groups '(?>'"}
                name = next((v for k, v in sorted(names.items(), key=lambda kv: -len(kv[0]))
                             if head.startswith(k)), "inline flags like '(?i)'")
                raise self.fail(name)
        inner = self.alternation(top=False)
        if self.peek() != ")":
            raise RegexError(f"unclosed '(' at position {start} of the regex")
        self.i += 1
        return f"( {inner} )"

    def quantified(self, atom: str) -> str:
        suffix = ""
        c = self.peek()
        if c in ("*", "+", "?"):
            self.i += 1
            suffix = c
        elif c == "{" and (match := _BRACES.match(self.p, self.i)):
            low, comma, high = match.group(1), match.group(2), match.group(3)
            if not low and not comma:
                raise RegexError(f"empty quantifier '{{}}' at position {self.i} of the regex")
            lo = int(low or 0)
            hi = lo if not comma else (int(high) if high else None)
            if hi is not None and lo > hi:
                raise RegexError(f"quantifier {{{lo},{hi}}} has min > max at position {self.i} of the regex")
            self.repetition += hi if hi is not None else lo
            if self.repetition > self.max_repetition:
                raise RegexError(f"the regex's repetition counts add up to more than {self.max_repetition} "
                                 f"(setting max_schema_repetition)")
            self.i = match.end()
            suffix = f"{{{lo}}}" if not comma else f"{{{lo},{'' if hi is None else hi}}}"
        if not suffix:
            return atom
        if self.peek() == "?":
            self.i += 1  # lazy: the same whole-string matches as greedy
        elif self.peek() == "+":
            raise self.fail("the possessive quantifier '+' after a quantifier")
        if self.peek() in ("*", "+", "?") or (self.peek() == "{" and _BRACES.match(self.p, self.i)):
            raise RegexError(f"multiple repeat at position {self.i} of the regex")
        return atom + suffix

    def _escaped_char(self) -> str:
        """The character of an escape such as \\n, \\x41 or \\. (self.i at the backslash)."""
        if self.i + 1 >= len(self.p):
            raise RegexError("the regex ends with a lone backslash")
        c = self.p[self.i + 1]
        if c in _CHAR_ESCAPES:
            self.i += 2
            return _CHAR_ESCAPES[c]
        if c in _HEX_ESCAPES:
            digits = self.p[self.i + 2:self.i + 2 + _HEX_ESCAPES[c]]
            if len(digits) != _HEX_ESCAPES[c] or not all(d in "0123456789abcdefABCDEF" for d in digits):
                raise RegexError(f"bad escape \\{c}{digits} at position {self.i} of the regex")
            self.i += 2 + len(digits)
            return chr(int(digits, 16))
        if c.isdigit():
            raise self.fail(f"the backreference \\{c}")
        if c in _REFUSED_ESCAPES:
            raise self.fail(_REFUSED_ESCAPES[c])
        if c.isascii() and c.isalnum():
            raise RegexError(f"bad escape \\{c} at position {self.i} of the regex")
        self.i += 2
        return c

    def escape(self) -> str:
        c = self.p[self.i + 1:self.i + 2]
        if c.lower() in _CLASS_ESCAPES:
            self.i += 2
            return _class(_CLASS_ESCAPES[c.lower()], negated=c.isupper())
        return gbnf_literal(self._escaped_char())

    def char_class(self) -> str:
        start = self.i
        self.i += 1
        negated = self.peek() == "^"
        if negated:
            self.i += 1
        ranges: list[tuple[str, str]] = []
        first = True
        while True:
            if self.i >= len(self.p):
                raise RegexError(f"unterminated character class at position {start} of the regex")
            c = self.p[self.i]
            if c == "]" and not first:
                self.i += 1
                break
            first = False
            if c == "\\" and self.p[self.i + 1:self.i + 2].lower() in _CLASS_ESCAPES:
                letter = self.p[self.i + 1]
                if letter.isupper():
                    raise self.fail(f"the negated escape \\{letter} inside a character class")
                self.i += 2
                ranges.extend(_CLASS_ESCAPES[letter])
                continue
            low = self._class_char()
            high = low
            if self.peek() == "-" and self.p[self.i + 1:self.i + 2] not in ("]", ""):
                self.i += 1
                if self.p[self.i] == "\\" and self.p[self.i + 1:self.i + 2].lower() in _CLASS_ESCAPES:
                    raise RegexError(f"bad character range ending in a class escape at position {self.i}")
                high = self._class_char()
                if ord(high) < ord(low):
                    raise RegexError(f"bad character range {low}-{high} at position {self.i} of the regex")
            ranges.append((low, high))
        return _class(ranges, negated)

    def _class_char(self) -> str:
        c = self.p[self.i]
        if c == "\\":
            if self.p[self.i + 1:self.i + 2] == "b":  # inside a class, \b is a backspace
                self.i += 2
                return "\b"
            return self._escaped_char()
        if c == "[" and self.p[self.i + 1:self.i + 2] in (":", "=", "."):
            raise self.fail("POSIX classes like '[:alpha:]'")
        self.i += 1
        return c


def _class(ranges: list[tuple[str, str]], negated: bool) -> str:
    body = "".join(_char(lo) if lo == hi else f"{_char(lo)}-{_char(hi)}" for lo, hi in ranges)
    return f"[{'^' if negated else ''}{body}]"
