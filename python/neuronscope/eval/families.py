"""Planted families the explainer's condition grammar cannot express exactly (issue 15, item 6).

The grammar families of ``planted`` are drawn from the same token sets and token-after-token contexts
the offline agent searches, so recall there is recovery inside the grammar. These six are not:

- ``category``: semantic categories defined by word lists that no agent module sees (this module is
  imported by the evaluation only), matched on whole words, so sub-word pieces fire too;
- ``graded``: one concept with graded strength: numbers, the activation growing with the number's value;
- ``phrase``: the last token of multi-word phrases ("for example", "in order to");
- ``position``: the first tokens of a document, falling with position;
- ``overlap``: two modes whose word sets share members (a shared word fires at the stronger mode);
- ``context-pair``: the same words as two modes that differ only by context (inside or outside
  parentheses; after a trigger word or not), at different strengths.

Every word list was checked against the pydoc corpus (``tests/test_planted_families.py`` asserts each
family fires there). :func:`open_families` draws 6 neurons per family, deterministic for ``seed``.
"""

from __future__ import annotations

import numpy as np

from .definition import PlantedNeuron, TrueMode

# Word categories: none shares a word with ``planted.CONCEPTS`` (the grammar families' token sets).
CATEGORIES: dict[str, tuple[str, ...]] = {
    "time words": ("time", "times", "now", "later", "before", "after", "during", "until", "when", "once", "already",
                   "again", "soon"),
    "containers": ("sequence", "sequences", "mapping", "mappings", "dictionary", "dictionaries", "collection",
                   "collections", "container", "containers", "array", "arrays", "stack", "iterable", "iterables",
                   "iterator", "iterators", "element", "elements", "item", "items"),
    "arithmetic": ("add", "addition", "subtraction", "multiplication", "division", "sum", "product", "quotient",
                   "remainder", "modulo", "power", "exponent", "negative", "positive", "integer", "integers",
                   "floor", "absolute", "sign", "plus", "minus"),
    "people": ("user", "users", "programmer", "programmers", "caller", "callers", "owner", "you", "we", "yourself",
               "someone", "people"),
    "creating and deleting": ("create", "created", "creates", "creating", "creation", "delete", "deleted", "deletes",
                              "deletion", "remove", "removed", "removes", "destroyed", "init", "initialize",
                              "initialized"),
    "scopes": ("global", "globals", "local", "locals", "nonlocal", "scope", "scopes", "namespace", "namespaces",
               "binding", "bindings", "bound", "enclosing"),
    "text": ("strings", "character", "characters", "text", "unicode", "literal", "literals", "encoding",
             "ascii", "letter", "letters", "word", "words"),
    "frequency adverbs": ("usually", "normally", "generally", "typically", "often", "sometimes", "always", "rarely",
                          "commonly", "frequently", "seldom"),
    "calling": ("call", "calls", "called", "calling", "invoke", "invoked", "invokes", "returns", "returned"),
    "change": ("change", "changes", "changed", "modify", "modified", "modifies", "mutable", "immutable", "update",
               "updated", "mutate"),
}
# Second sets of the overlap family: (category, other meaning, its words; the shared words are in both).
OVERLAPS: list[tuple[str, str, tuple[str, ...]]] = [
    ("containers", "text as a sequence", ("strings", "character", "characters", "sequence", "sequences")),
    ("creating and deleting", "mutation", ("change", "changed", "modify", "modified", "delete", "deleted", "remove",
                                           "removed")),
    ("arithmetic", "number words", ("number", "numbers", "digit", "digits", "integer", "integers", "count")),
    ("time words", "iteration", ("loop", "loops", "iterate", "iteration", "iterating", "repeated", "until", "once")),
    ("scopes", "variables", ("variable", "variables", "identifier", "identifiers", "global", "local", "binding")),
    ("calling", "functions", ("function", "functions", "method", "methods", "call", "calls")),
]
PHRASES: dict[str, tuple[tuple[str, ...], ...]] = {
    "giving an example": (("for", "example"), ("for", "instance"), ("such", "as")),
    "purpose": (("in", "order", "to"), ("so", "that"), ("to", "allow"), ("to", "avoid"), ("to", "ensure")),
    "alternatives": (("instead", "of"), ("rather", "than")),
    "bounds": (("at", "least"), ("at", "most"), ("one", "or", "more"), ("up", "to"), ("more", "than")),
    "caveats": (("note", "that"), ("even", "if"), ("in", "particular"), ("in", "general")),
    "what follows": (("as", "follows"), ("the", "following")),
}
# The context-pair family: (label, words, context, opposite context); the first context, the rarer one in
# pydoc, is the strong mode, so that the weak one has the tokens to show in the samples.
PARENS_IN = {"kind": "parens", "inside": True}
PARENS_OUT = {"kind": "parens", "inside": False}
CONTEXT_PAIRS: list[tuple[str, tuple[str, ...], dict, dict]] = [
    ("x and y", ("x", "y"), PARENS_IN, PARENS_OUT),
    ("self", ("self",), PARENS_OUT, PARENS_IN),
    ("small numbers", ("0", "1", "2", "3"), PARENS_IN, PARENS_OUT),
    ("name", ("name", "names"), PARENS_IN, PARENS_OUT),
    ("value", ("value", "values"), {"kind": "after", "words": ["return", "returns", "returned"], "window": 3,
                                    "present": True},
     {"kind": "after", "words": ["return", "returns", "returned"], "window": 3, "present": False}),
    ("object", ("object", "objects"), {"kind": "after", "words": ["the"], "window": 2, "present": True},
     {"kind": "after", "words": ["the"], "window": 2, "present": False}),
]
FAMILIES = ("category", "graded", "phrase", "position", "overlap", "context-pair")
PER_FAMILY = 6


def words_mode(label: str, words, strength: float, context: dict | None = None) -> TrueMode:
    feature: dict = {"kind": "words", "words": sorted(words)}
    if context is not None:
        feature["context"] = context
    return TrueMode(label, [], round(float(strength), 3), feature)


def _where(ctx: dict) -> str:
    if ctx["kind"] == "parens":
        return "inside parentheses" if ctx["inside"] else "outside parentheses"
    near = "/".join(ctx["words"])
    return f"{'within' if ctx['present'] else 'not within'} {ctx['window']} tokens after {near}"


def open_families(seed: int = 0) -> list[PlantedNeuron]:
    """``PER_FAMILY`` neurons of each family of the module docstring, in ``FAMILIES`` order."""
    rng = np.random.default_rng([seed, 2])
    decks: dict[int, list[str]] = {}

    def deal(names: list[str], k: int) -> list[str]:
        """k distinct names, going through a shuffled deck of ``names`` (so each is used before any repeats)."""
        deck = decks.setdefault(id(names), [])
        out: list[str] = []
        while len(out) < k:
            if not deck:
                deck += [names[i] for i in rng.permutation(len(names))]
            n = deck.pop(0)
            if n not in out:
                out.append(n)
        return out

    cats, groups = list(CATEGORIES), list(PHRASES)

    def pick(k: int) -> list[str]:
        return deal(cats, k)

    def alone(modes: list[TrueMode]) -> list[list[int]]:
        return [[i] for i in range(len(modes))]

    def neuron(kind: str, modes: list[TrueMode]) -> PlantedNeuron:
        return PlantedNeuron(kind, modes, alone(modes))

    half = PER_FAMILY // 2
    out: list[PlantedNeuron] = []
    for i in range(PER_FAMILY):  # one category, then two
        names = pick(1 if i < half else 2)
        out.append(neuron("category", [words_mode(n, CATEGORIES[n], rng.uniform(1.5, 4)) for n in names]))
    for i in range(PER_FAMILY):  # numbers graded by value, alone, then with a category
        ms = [TrueMode("numbers, by magnitude", [], round(float(rng.uniform(2.5, 4)), 3), {"kind": "number"})]
        if i >= half:
            n = pick(1)[0]
            ms.append(words_mode(n, CATEGORIES[n], rng.uniform(1.0, 2.0)))
        out.append(neuron("graded", ms))
    for i in range(PER_FAMILY):  # one phrase group, then two
        names = deal(groups, 1 if i < half else 2)
        out.append(neuron("phrase", [TrueMode(f"phrases: {n}", [], round(float(rng.uniform(1.5, 4)), 3),
                                              {"kind": "phrase", "phrases": [list(p) for p in PHRASES[n]]})
                                     for n in names]))
    for i in range(PER_FAMILY):  # document start, alone, then with a category
        first = int(rng.integers(6, 13))
        ms = [TrueMode(f"first {first} tokens of a document", [], round(float(rng.uniform(2.5, 4)), 3),
                       {"kind": "doc_start", "first": first})]
        if i >= half:
            n = pick(1)[0]
            ms.append(words_mode(n, CATEGORIES[n], rng.uniform(1.0, 2.0)))
        out.append(neuron("position", ms))
    for cat, other, words in OVERLAPS[:PER_FAMILY]:
        out.append(neuron("overlap", [words_mode(cat, CATEGORIES[cat], rng.uniform(2.5, 3.5)),
                                      words_mode(other, words, rng.uniform(1.2, 2.2))]))
    for label, words, ctx, opposite in CONTEXT_PAIRS[:PER_FAMILY]:
        out.append(neuron("context-pair", [words_mode(f"{label} {_where(ctx)}", words, rng.uniform(2.5, 3.5), ctx),
                                           words_mode(f"{label} {_where(opposite)}", words, rng.uniform(0.8, 1.5),
                                                      opposite)]))
    return out
