r"""The regexes of ``token_regex`` and ``preceding_regex`` conditions, with bounded work.

Patterns come from files and from LLMs, so a pattern such as ``(.|.)*!`` (exponential backtracking in
Python's ``re``) must never hang ``explain`` or ``report``. A pattern must be valid for ``re`` (its syntax is
the condition language's) and is run by the ``regex`` module, whose searches take a timeout:

* when a condition is made (a file is read, an LLM proposes one) the pattern is probed on short
  adversarial texts built from its own characters; a pattern that times out there is invalid;
* when a condition is evaluated every search gets at most :data:`SEARCH_TIMEOUT_S`, and the searches of one
  evaluation together at most ``BUDGET_BASE_S + BUDGET_PER_SEARCH_S * n``; running over either is an
  :class:`~neuronscope.errors.ExplanationError` naming the pattern.

Ordinary patterns take microseconds per text, so the bounds are orders of magnitude above real use. So that
masks are the ones ``re`` gives, ``\w \W \d \D \s \S \b \B`` are rewritten to Python's own classes (the two
engines define them differently, e.g. for ``²`` and combining marks), and when case is ignored so are
``i I ı İ`` (one class for ``re``, two for ``regex``). Left over: characters newer than Python's Unicode
tables; U+0345 (a combining mark that folds to a letter) in some case-insensitive patterns, a ``regex`` quirk;
those letters when written as escapes or under a scoped case flag ``(?-i:…)``. Verbose and ASCII patterns
are run as written.
"""

from __future__ import annotations

import re
import time
from functools import lru_cache

import regex

from ..errors import ExplanationError

SEARCH_TIMEOUT_S = 0.25
"""Longest one search may take (texts are a token or a window of at most ``MAX_OFFSET`` tokens)."""
PROBE_TIMEOUT_S = 0.25
"""Longest one probe search may take when a condition is made."""
BUDGET_BASE_S = 5.0
BUDGET_PER_SEARCH_S = 5e-4
"""With ``BUDGET_BASE_S``: the time all searches of one evaluation may take together (50-500x a normal search)."""
_PROBE_LEN = 48

TOO_SLOW = ("backtracks catastrophically (nested or overlapping repetition such as (a|a)* or (x+)+); "
            "rewrite it without repeating a group that can match the same text in two ways")


def flags(case_sensitive: bool) -> int:
    return 0 if case_sensitive else regex.IGNORECASE


def _probes(pattern: str) -> list[str]:
    """Short texts that make a backtracking pattern explode: runs of its own characters, alone, after one of
    them (``!aaaa…``) or before all of them (the literal a match needs, out of place), each ending in a
    character nothing expects."""
    chars = sorted({c for c in pattern if c.isprintable()} | {"a", " ", "0"})[:24]
    tail = "".join(chars)
    out = []
    for c in chars:
        out += [c * _PROBE_LEN + "\x00", c + "a" * _PROBE_LEN + "\x00", c * _PROBE_LEN + tail + "\x00"]
    return out


_SETS = {"w": r"\p{L}\p{N}_", "d": r"\p{Nd}", "s": r"\s\x1c-\x1f"}
"""The members of ``re``'s ``\\w \\d \\s`` in ``regex`` terms: Python's ``isalnum`` / ``isdecimal`` / ``isspace``
(checked equal over every character Python's Unicode tables assign)."""


@lru_cache(maxsize=3)
def _complement(name: str) -> str:
    """The characters outside ``re``'s class ``name`` as explicit ranges (for ``\\W``, ``\\S`` inside a set,
    where ``regex`` has no set difference)."""
    every = "".join(map(chr, range(0x110000)))
    spans = [m.span() for m in re.finditer("\\" + name + "+", every)]
    gaps = [(a, b) for a, b in zip([0] + [e for _, e in spans], [s for s, _ in spans] + [0x110000], strict=True)
            if a < b]
    return "".join(f"\\U{a:08x}" if b - a == 1 else f"\\U{a:08x}-\\U{b - 1:08x}" for a, b in gaps)


_NEGATED = {"d": r"\P{Nd}"}
"""Complements that fit in a set as one negated property."""


def _spell(e: str, in_class: bool) -> str:
    """``re``'s class escape ``\\e`` for ``regex``, inside a set or standing alone."""
    name = e.lower()
    if e == name:
        return _SETS[name] if in_class else f"[{_SETS[name]}]"
    if name in _NEGATED:
        return _NEGATED[name] if in_class else f"[{_NEGATED[name]}]"
    return _complement(name) if in_class else f"[^{_SETS[name]}]"


_WORD = f"[{_SETS['w']}]"
_BOUNDS = {"b": f"(?:(?<={_WORD})(?!{_WORD})|(?<!{_WORD})(?={_WORD}))",
           "B": f"(?:(?<={_WORD})(?={_WORD})|(?<!{_WORD})(?!{_WORD}))"}


_DOTTED = "iIıİ"
"""One class of equivalent letters for ``re`` when case is ignored; ``regex`` folds them in two pairs."""


def _fixed(text: str) -> str:
    """``text`` matched with case respected: ``re``'s class escapes ignore the case flag, ``regex`` folds them."""
    return f"(?-i:{text})"


_GROUP = re.compile(r"\(\?(?:[aiLmsux-]+[:)]|P?<(?![=!])[^>]*>|P=[^)]*\)|#[^)]*\)|<?[=!]|:|\()")
"""The head of a ``(?…)`` group, copied as it is (its letters are flags or names, not text)."""
_SCOPED_CASE = re.compile(r"\(\?[aLmsux]*-?[aLmsux]*i[aiLmsux-]*:")


def _close_set(negated: bool, plain: str, fixed: str) -> str:
    """A set of ordinary members ``plain`` (case folded as the flags say) and class escapes ``fixed`` (never)."""
    hat = "^" if negated else ""
    if not fixed:
        return f"[{hat}{plain}]"
    if not plain:
        return _fixed(f"[{hat}{fixed}]")
    if negated:
        return f"(?:(?!{_fixed(f'[{fixed}]')})[^{plain}])"
    return f"(?:[{plain}]|{_fixed(f'[{fixed}]')})"


def translate(pattern: str, ignore_case: bool) -> str:
    """``pattern`` (valid for ``re``) with its class escapes, word boundaries and (when case is ignored) the
    letters i, I, ı, İ spelt as ``re`` means them."""
    out, i, n = [], 0, len(pattern)
    plain: list[str] | None = None  # the ordinary members of the set being read (None: not in a set)
    fixed: list[str] = []  # its class escapes
    start, negated = 0, False
    while i < n:
        c = pattern[i]
        if c == "\\" and i + 1 < n:
            e = pattern[i + 1]
            if e in "wWdDsS":
                if plain is None:
                    out.append(_fixed(_spell(e, False)))
                else:
                    fixed.append(_spell(e, True))
            elif e in _BOUNDS and plain is None:
                out.append(_fixed(_BOUNDS[e]))
            else:
                (out if plain is None else plain).append(pattern[i : i + 2])
            i += 2
        elif c == "(" and plain is None and (head := _GROUP.match(pattern, i)):
            out.append(head.group())
            i = head.end()
        elif c == "[" and plain is None:
            start, negated = i, pattern[i + 1 : i + 2] == "^"
            i += 1 + negated
            plain, fixed = [], []
            if pattern[i : i + 1] == "]":  # a "]" first in a set is a literal
                plain.append("\\]")
                i += 1
        elif c == "]" and plain is not None:
            members = "[" + pattern[start + 1 + negated : i + 1]  # the set, not negated
            if ignore_case and any(re.search(members, x, re.IGNORECASE) for x in _DOTTED):
                plain.append(_DOTTED)
            out.append(_close_set(negated, "".join(plain), "".join(fixed)))
            plain, i = None, i + 1
        else:
            (out if plain is None else plain).append(f"[{_DOTTED}]" if ignore_case and plain is None and
                                                     c in _DOTTED else c)
            i += 1
    return "".join(out)


@lru_cache(maxsize=4096)
def compile_pattern(pattern: str, case_sensitive: bool) -> regex.Pattern:
    """The compiled pattern, after the probes; ExplanationError when it is not a valid regex or is too slow."""
    try:
        as_re = re.compile(pattern, flags(case_sensitive))
    except (re.error, ValueError, OverflowError, RecursionError) as e:
        raise ExplanationError(f"pattern {pattern!r} is not a valid regex: {e}") from None
    plain = not as_re.flags & (re.VERBOSE | re.ASCII)
    # Scoped case flags ("(?-i:…)") would need the dotted letters tracked per group: they are left alone then.
    dotted = bool(as_re.flags & re.IGNORECASE) and not _SCOPED_CASE.search(pattern)
    try:
        rx = regex.compile(translate(pattern, dotted) if plain else pattern, flags(case_sensitive))
    except (regex.error, ValueError, OverflowError, RecursionError) as e:
        raise ExplanationError(f"pattern {pattern!r} is not a regex this neuronscope can run: {e}") from None
    for text in _probes(pattern):
        try:
            rx.search(text, timeout=PROBE_TIMEOUT_S)
        except TimeoutError:
            raise ExplanationError(f"pattern {pattern!r} is too slow: on the {len(text)}-character text "
                                   f"{text[:12]!r}… one search took over {PROBE_TIMEOUT_S} s; it "
                                   f"{TOO_SLOW}") from None
    return rx


class BoundedSearch:
    """``search(text) -> bool`` for one evaluation of at most ``n`` searches, within the time bounds."""

    def __init__(self, pattern: str, case_sensitive: bool, n: int, where: str = "condition") -> None:
        self.pattern, self.where = pattern, where
        self.rx = compile_pattern(pattern, case_sensitive)
        self.budget = BUDGET_BASE_S + BUDGET_PER_SEARCH_S * max(n, 0)
        self.deadline = time.monotonic() + self.budget

    def __call__(self, text: str) -> bool:
        left = self.deadline - time.monotonic()
        if left <= 0:
            self._fail(f"its searches took over {self.budget:.1f} s together")
        try:
            return self.rx.search(text, timeout=min(SEARCH_TIMEOUT_S, left)) is not None
        except TimeoutError:
            if left < SEARCH_TIMEOUT_S:
                self._fail(f"its searches took over {self.budget:.1f} s together")
            self._fail(f"one search on a {len(text)}-character text ({text[:24]!r}…) took over {SEARCH_TIMEOUT_S} s;"
                       f" it {TOO_SLOW}")
        return False  # unreachable: _fail raises

    def _fail(self, why: str) -> None:
        raise ExplanationError(f"{self.where}: pattern {self.pattern!r} is too slow to evaluate: {why}. The "
                               "condition is invalid; fix or remove it") from None
