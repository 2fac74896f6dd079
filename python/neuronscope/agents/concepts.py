"""Names that say what a mode means: the offline mode explainer's concept vocabulary.

A mode's label is the meaning its tokens share when they share one ("months", "closing brackets",
"Python keywords", "after `import`"), else its literal tokens; its description stays the precise,
executable reading. Offline this uses what is at hand:

- closed classes (function words, punctuation, keywords, digits ...) are decided by membership: most of
  the mode's activating token mass must be members (word lists and token shapes, ``CLOSED``);
- open classes (animals, food, places, ...) by all-MiniLM-L6-v2: each of the mode's tokens is embedded as a
  word and compared with every concept's phrases; the concept is taken when the weighted mean similarity
  is high, clearly above the runner-up, and most of the tokens pick it (``OPEN``, thresholds below).

A single token is never given a category name (one word is its own best label).
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from functools import lru_cache

import numpy as np
import torch

from ..explanations.model import AllOf, Mode, Not, Position, PrecedingRegex, PrevTokenIn, normalise
from .render import context_phrase, describe_condition, describe_conditions, quote_tokens

MIN_SHARE = 0.7
"""Closed class: share of the mode's activating token mass that must be members."""
MIN_SIMILARITY = 0.38
"""Open class: weighted mean cosine of the tokens with the concept's best phrase."""
MIN_MARGIN = 0.05
"""Open class: ... this much above the runner-up concept."""
MIN_VOTES = 0.5
"""Open class: share of the token mass whose own nearest concept it is."""
MIN_WORDS = 3
"""Open class: distinct words at least (two words are their own best label)."""


@dataclass(frozen=True)
class Concept:
    name: str
    """The label ("months")."""
    phrase: str
    """How the description opens ("Month names")."""
    members: frozenset[str] = frozenset()
    pattern: str | None = None
    """A token shape that makes a member (regex on the normalised token)."""

    def contains(self, token: str) -> bool:
        return token in self.members or (self.pattern is not None and re.fullmatch(self.pattern, token) is not None)


def _c(name: str, phrase: str, words: str = "", pattern: str | None = None) -> Concept:
    return Concept(name, phrase, frozenset(words.split()), pattern)


CLOSED: tuple[Concept, ...] = (
    _c("numbers", "Numbers", "zero one two three four five six seven eight nine ten hundred thousand million",
       r"\d+([.,]\d+)?"),
    _c("ordinals", "Ordinal words", "first second third fourth fifth sixth last next previous final 1st 2nd 3rd"),
    _c("months", "Month names", "january february march april may june july august september october november "
       "december jan feb mar apr jun jul aug sep sept oct nov dec"),
    _c("weekdays", "Days of the week", "monday tuesday wednesday thursday friday saturday sunday"),
    _c("time units", "Units of time", "second seconds minute minutes hour hours day days week weeks month months "
       "year years millisecond milliseconds microseconds nanoseconds ms decade century"),
    # The demonstratives (this, that, these, those) are pronouns as well as determiners: both classes hold them,
    # so a mode of demonstratives and one of personal pronouns share a class (planted pronoun modes were split
    # into "pronouns" and "articles and determiners" on 3 of 102 neurons).
    _c("pronouns", "Pronouns", "i me my mine you your yours he him his she her hers it its we us our they them "
       "their theirs itself themselves yourself myself this that these those"),
    _c("articles and determiners", "Articles and determiners", "a an the this that these those each every some "
       "any no"),
    _c("prepositions", "Prepositions", "of in on at by for with from to into onto over under about between "
       "through during without within against among after before above below"),
    _c("conjunctions", "Conjunctions", "and or but nor so yet because although while whereas unless if"),
    _c("negation", "Negation", "not no never none neither nor cannot nothing nobody without n't"),
    _c("modal verbs", "Modal verbs", "may might must shall should can could will would"),
    _c("forms of be / have / do", "Auxiliary verbs", "is are was were be been being am has have had having does "
       "do did done"),
    _c("question words", "Question words", "what which who whom whose when where why how"),
    _c("quantifiers", "Quantifiers", "all any some many much more most few fewer less least several both either "
       "each every"),
    _c("comparison words", "Comparison words", "equal equals less greater than compare compared comparison same "
       "different larger smaller higher lower"),
    _c("logic words", "Logic words", "and or not if else then true false both either"),
    _c("Python keywords", "Python keywords", "def class return import from lambda yield while for pass raise "
       "try except finally with as global nonlocal assert del elif else if in is not and or async await break "
       "continue"),
    _c("built-in types", "Built-in type names", "int float str bytes bool list dict tuple set frozenset complex "
       "bytearray object type"),
    _c("boolean and null literals", "True, False and None", "true false none null nil"),
    _c("opening brackets", "Opening brackets", "( [ { <"),
    _c("closing brackets", "Closing brackets", ") ] } >"),
    _c("brackets", "Brackets", "( ) [ ] { } < >"),
    _c("quotation marks", "Quotation marks", "\" ' ` '' `` « » “ ” ‘ ’"),
    _c("sentence-ending punctuation", "Sentence-ending punctuation", ". ! ? ..."),
    _c("commas and colons", "Commas, colons and semicolons", ", : ;"),
    _c("arithmetic operators", "Arithmetic operators", "+ - * / % ** // @"),
    _c("comparison and assignment operators", "Comparison and assignment operators", "= == != < > <= >= += -= :="),
    _c("punctuation", "Punctuation", "", r"[^\w\s]+"),
    _c("colours", "Colour words", "red green blue yellow black white grey gray orange purple pink brown"),
    _c("file and path words", "Files and paths", "file files path paths directory directories folder filename "
       "open read write close os.path dir"),
    _c("errors and exceptions", "Errors and exceptions", "error errors exception exceptions raise raised raises "
       "fail failed failure traceback warning warnings"),
    _c("capitalised words", "Capitalised words", "", r"[A-Z][a-z]+"),
    _c("upper-case words", "Upper-case words and acronyms", "", r"[A-Z]{2,}"),
    _c("-ing words", "Words ending in -ing", "", r"[a-z]+ing"),
    _c("-ed words", "Words ending in -ed", "", r"[a-z]+ed"),
    _c("-ly adverbs", "Adverbs ending in -ly", "", r"[a-z]+ly"),
)

OPEN: tuple[tuple[str, str, tuple[str, ...]], ...] = (
    # (label, description phrase, phrases embedded for matching)
    ("animals", "Animals", ("animals", "an animal species")),
    ("food and drink", "Food and drink", ("food", "things to eat and drink")),
    ("countries", "Countries", ("countries", "names of nations")),
    ("cities and places", "Cities and places", ("cities", "places and locations")),
    ("people and roles", "People and their roles", ("people and roles", "a person or occupation")),
    ("family members", "Family members", ("family members", "relatives")),
    ("body parts", "Body parts", ("body parts", "parts of the human body")),
    ("emotions", "Emotions and feelings", ("emotions", "feelings")),
    ("sports and games", "Sports and games", ("sports", "games")),
    ("music", "Music", ("music", "musical instruments and songs")),
    ("weather", "Weather", ("weather", "climate")),
    ("plants", "Plants", ("plants", "trees and flowers")),
    ("vehicles and transport", "Vehicles and transport", ("vehicles", "transport")),
    ("clothing", "Clothing", ("clothing", "clothes")),
    ("buildings and rooms", "Buildings and rooms", ("buildings", "rooms of a house")),
    ("tools and devices", "Tools and devices", ("tools", "devices and machines")),
    ("money and finance", "Money and finance", ("money", "finance and payments")),
    ("law and government", "Law and government", ("law", "government and politics")),
    ("medicine and health", "Medicine and health", ("medicine", "health and disease")),
    ("science", "Science", ("science", "physics chemistry biology")),
    ("mathematics", "Mathematics", ("mathematics", "mathematical terms")),
    ("computers and software", "Computers and software", ("software", "computer programs")),
    ("networking and the web", "Networking and the web", ("internet", "network protocols and the web")),
    ("data and storage", "Data and storage", ("data storage", "databases and files")),
    ("text and strings", "Text and strings", ("text", "characters and strings")),
    ("education", "Education", ("education", "school and learning")),
    ("religion", "Religion", ("religion", "faith and worship")),
    ("war and conflict", "War and conflict", ("war", "military conflict")),
    ("art and literature", "Art and literature", ("art", "books and literature")),
    ("size and quantity", "Size and quantity", ("size", "large and small amounts")),
    ("speed and motion", "Speed and motion", ("speed", "movement")),
    ("time", "Time", ("time", "moments and durations")),
    ("language and grammar", "Language and grammar", ("grammar", "words and sentences")),
)


@lru_cache(maxsize=1)
def _open_vectors() -> tuple[np.ndarray, np.ndarray]:
    """(P, 384) phrase embeddings and (P,) the concept each phrase belongs to."""
    from ..embedding import embed_texts

    phrases = [(k, p) for k, (_, _, ps) in enumerate(OPEN) for p in ps]
    vecs = embed_texts([p for _, p in phrases]).numpy().astype(np.float64)
    return vecs, np.asarray([k for k, _ in phrases])


_WORD_CACHE: dict[str, np.ndarray] = {}


def _word_vectors(words: Sequence[str]) -> np.ndarray:
    from ..embedding import embed_texts

    new = [w for w in dict.fromkeys(words) if w not in _WORD_CACHE]
    if new:
        _WORD_CACHE.update(zip(new, embed_texts(new).numpy().astype(np.float64), strict=True))
    return np.stack([_WORD_CACHE[w] for w in words]) if words else np.zeros((0, 384))


_CLOSED_INDEX = {id(c): k for k, c in enumerate(CLOSED)}


@lru_cache(maxsize=1 << 16)
def _memberships(token: str) -> tuple[bool, ...]:
    """(len(CLOSED),) whether ``token`` (or its lower case) is a member of each closed class, cached: the merge
    test asks for the same few hundred tokens thousands of times per neuron, and shape classes run a regex."""
    low = token.lower()
    return tuple(c.contains(token) or c.contains(low) for c in CLOSED)


def is_member(c: Concept, token: str) -> bool:
    """Whether ``token`` (or its lower case) is a member of ``c``."""
    k = _CLOSED_INDEX.get(id(c))
    return _memberships(token)[k] if k is not None else c.contains(token) or c.contains(token.lower())


def closed_concept(tokens: Counter) -> Concept | None:
    """The closed class most of the token mass belongs to (the most specific one first), or None."""
    total = sum(tokens.values())
    if len([t for t in tokens if tokens[t] > 0]) < 2 or total <= 0:
        return None
    best, best_share = None, 0.0
    for c in CLOSED:
        members = [t for t in tokens if is_member(c, t)]
        share = sum(tokens[t] for t in members) / total
        # a class needs at least two of its members among the tokens (one word is its own best label)
        if len(members) >= 2 and share >= MIN_SHARE and share > best_share + 1e-9:
            best, best_share = c, share
    return best


CATCH_ALL = frozenset({"punctuation"})
"""Closed classes too broad to be evidence that two modes mean the same (brackets and quotes are both
punctuation, yet two meanings)."""


def class_share(c: Concept, tokens: Counter) -> float:
    """Share of the token mass that is a member of ``c``."""
    total = sum(tokens.values())
    return sum(v for t, v in tokens.items() if is_member(c, t)) / total if total > 0 else 0.0


def shared_class(a: Counter, b: Counter) -> Concept | None:
    """The first closed class (most specific first) holding at least ``MIN_SHARE`` of both token masses."""
    for c in CLOSED:
        if c.name not in CATCH_ALL and class_share(c, a) >= MIN_SHARE and class_share(c, b) >= MIN_SHARE:
            return c
    return None


def shared_catch_all(a: Counter, b: Counter) -> Concept | None:
    """The catch-all class (``CATCH_ALL``) holding at least ``MIN_SHARE`` of both token masses, or None."""
    for c in CLOSED:
        if c.name in CATCH_ALL and class_share(c, a) >= MIN_SHARE and class_share(c, b) >= MIN_SHARE:
            return c
    return None


def open_concept(tokens: Counter) -> tuple[str, str] | None:
    """(label, phrase) of the open class the tokens sit close to in MiniLM's space, or None."""
    words = [t for t in tokens if re.search(r"[A-Za-z]{3,}", t)]
    total = sum(tokens.values())
    # An open class needs several words, and words must carry most of the mode (not digits or symbols).
    if len(words) < MIN_WORDS or total <= 0 or sum(tokens[t] for t in words) < 0.6 * total:
        return None
    w = np.asarray([tokens[t] for t in words], dtype=np.float64)
    w /= w.sum()
    phrase_vecs, owner = _open_vectors()
    sims = _word_vectors([t.lower() for t in words]) @ phrase_vecs.T  # (n, P)
    per = np.full((len(words), len(OPEN)), -1.0)
    for k in range(len(OPEN)):
        per[:, k] = sims[:, owner == k].max(1)
    mean = w @ per
    order = np.argsort(-mean)
    top, second = int(order[0]), int(order[1])
    votes = float(w[per.argmax(1) == top].sum())
    if mean[top] >= MIN_SIMILARITY and mean[top] - mean[second] >= MIN_MARGIN and votes >= MIN_VOTES:
        return OPEN[top][0], OPEN[top][1]
    return None


def mode_tokens(ws, mode: Mode, active: torch.Tensor) -> Counter:
    """The mode's activating train tokens: normalised token string → activation mass."""
    fires = ws.fires(mode) & active
    ids = ws.batch.ids[ws.batch.scored][fires].tolist()
    acts = ws.batch.acts[fires].tolist()
    out: Counter = Counter()
    for i, a in zip(ids, acts, strict=True):
        key = normalise(ws.vocab.pieces[int(i)], True)
        if key:
            out[key] += max(float(a), 0.0)
    return out


def _context_only(mode: Mode) -> list[PrevTokenIn] | None:
    """The context conditions when the mode is defined by context alone ("any token after `import`")."""
    if mode.conditions and all(isinstance(c, PrevTokenIn) for c in mode.conditions):
        return list(mode.conditions)  # type: ignore[arg-type]
    return None


def _contexts(mode: Mode) -> list[str]:
    """Context restrictions of the mode's conditions ("after "import""), to qualify a concept label."""
    out = []
    for c in mode.conditions:
        if isinstance(c, AllOf):
            for s in c.conditions:
                if isinstance(s, PrevTokenIn) and s.offset == 1:
                    out.append(f"after {quote_tokens(s.tokens, 2)}")
                elif isinstance(s, (PrecedingRegex, Not)):
                    out.append(context_phrase(s))
    return sorted(set(out))


def name_mode(ws, mode: Mode, active: torch.Tensor) -> Mode:
    """Sets the mode's ``concept``, ``label`` and ``description`` (in place; see the module docstring)."""
    if not mode.conditions or mode.additive:  # the context term names itself (``render_context``)
        return mode
    reading, graded = describe_conditions(mode.conditions), _graded_note(mode)
    if mode.is_background:
        mode.concept = None
        mode.label = "background"
        near = f"; any other word as the {mode.similar} listed words nearest to it in meaning" if mode.similar else ""
        mode.description = f"Weak, diffuse firing: {reading}{graded}{near}"
        return mode
    ctx_only = _context_only(mode)
    if ctx_only is not None:
        toks = tuple(t for c in ctx_only for t in c.tokens)
        where = "after" if all(c.offset == 1 for c in ctx_only) else "shortly after"
        mode.concept = f"{where} {quote_tokens(toks, 3, '`')}"
        mode.label = mode.concept
        mode.description = f"Tokens {where} {quote_tokens(toks)}: {reading}{graded}"
        return mode
    if all(isinstance(c, Position) for c in mode.conditions):  # a position effect, whatever the tokens there
        mode.label = describe_conditions(mode.conditions)
        mode.concept = "start of a document" if "first" in mode.label else "position in a document"
        mode.description = f"Position in the document, not the token: {reading}{graded}"
        return mode
    tokens = mode_tokens(ws, mode, active)
    concept = closed_concept(tokens)
    name, phrase = (concept.name, concept.phrase) if concept is not None else (open_concept(tokens) or (None, None))
    ctx = _contexts(mode)
    if name is not None:
        mode.concept = name
        mode.label = name + (f" ({' or '.join(ctx)})" if ctx else "")
        mode.description = f"{phrase}{' ' + ' or '.join(ctx) if ctx else ''}: {reading}{graded}"
    else:
        mode.concept = None
        mode.description = reading[0].upper() + reading[1:] + graded
    return mode


def _graded_note(mode: Mode) -> str:
    """", strongest on ...", when the mode's levels differ clearly."""
    if not mode.graded or mode.condition_strengths is None:
        return ""
    order = np.argsort(-np.asarray(mode.condition_strengths))
    top = mode.conditions[int(order[0])]
    lo, hi = min(mode.condition_strengths), max(mode.condition_strengths)
    if hi <= 1.3 * max(lo, 1e-9):
        return ""
    return f" (strongest: {describe_condition(top)})"


def name_modes(ws, modes: list[Mode], active: torch.Tensor) -> list[Mode]:
    """:func:`name_mode` for each mode."""
    for m in modes:
        name_mode(ws, m, active)
    return modes


MIN_SPLIT_SHARE = 0.1
"""Class split: share of a mode's activating token mass each side of the split must carry."""
MAX_SPLIT_SIMILARITY = 0.3
"""Class split: the two sides' static word vectors must be less alike than this (cosine of centroids)."""


def class_split(parts: Sequence[Counter],
                max_similarity: float = MAX_SPLIT_SIMILARITY) -> tuple[Concept, list[int]] | None:
    """Where one mode's word atoms mix a closed class with words unlike it, the class and the atoms inside it.

    ``parts``: one Counter (token → activating mass, :func:`mode_tokens`) per word atom of the mode. A mode
    that one class names as a whole (:func:`closed_concept`) is split only by that class, from the words outside
    it (opening and closing brackets are both brackets, not two sub-classes), and never by a class of token
    shapes (-ed words: "called" beside "calls" is one word family); otherwise the word-list class whose member
    atoms (most of an atom's mass in the class) carry the largest share of the mode's mass, between
    ``MIN_SPLIT_SHARE`` and ``1 - MIN_SPLIT_SHARE``, splits it when its words and the rest are unlike in
    meaning (cosine of their static word-vector centroids below ``max_similarity``) and one side is a class by
    itself (:func:`closed_concept`): "import" beside "file", "directory" is a Python keyword beside file words
    (cosine 0.16), two meanings that a clustering of code-context vectors put together and that one strength
    cannot tell apart, while "these", "those" beside "they" (0.43) stay one; numbers beside "created", "deleted"
    are two even when numbers hold 70% of the mass. None when no class splits it."""
    whole: Counter = sum(parts, Counter())
    total = sum(whole.values())
    if len(parts) < 2 or total <= 0:
        return None
    named = closed_concept(whole)  # a mode one class names is split by that class only
    mass = [sum(p.values()) for p in parts]
    best: tuple[float, Concept, list[int]] | None = None
    for c in CLOSED if named is None else (named,):
        if c.name in CATCH_ALL or not c.members:
            continue
        inside = [i for i, p in enumerate(parts) if mass[i] > 0 and class_share(c, p) >= 0.5]
        share = sum(mass[i] for i in inside) / total
        if MIN_SPLIT_SHARE <= share <= 1 - MIN_SPLIT_SHARE and (best is None or share > best[0] + 1e-9):
            best = (share, c, inside)
    if best is None:
        return None
    _, c, inside = best
    a, b = [parts[i] for i in inside], [p for i, p in enumerate(parts) if i not in inside]
    # One side must be a class by itself (two members at least): a lone keyword among arbitrary words is
    # no evidence of a second meaning ("same" among the words after "the").
    if closed_concept(sum(a, Counter())) is None and closed_concept(sum(b, Counter())) is None:
        return None
    if word_similarity(a, b) >= max_similarity:
        return None
    return c, inside


def word_similarity(a: Sequence[Counter], b: Sequence[Counter]) -> float:
    """Cosine of the mass-weighted static word-vector centroids (``embedding.static_word_vectors``) of two
    groups of token Counters."""
    from ..embedding import static_word_vectors

    def centroid(group: Sequence[Counter]) -> torch.Tensor:
        words: Counter = Counter()
        for p in group:
            words.update(p)
        keys = [k for k, v in words.items() if v > 0]
        w = torch.tensor([words[k] for k in keys], dtype=torch.float32)
        return (static_word_vectors([k.lower() for k in keys]) * w[:, None]).sum(0)

    x, y = centroid(a), centroid(b)
    return float(x @ y / (x.norm() * y.norm() + 1e-12))


def single_class(tokens: Counter) -> Concept | None:
    """The class of a one-word mode (the first non-catch-all class holding it), else :func:`closed_concept`:
    for telling meanings apart only — a single token is never given a category name."""
    words = [t for t, v in tokens.items() if v > 0]
    if len(words) == 1:
        return next((c for c in CLOSED if c.name not in CATCH_ALL and is_member(c, words[0])), None)
    return closed_concept(tokens)
