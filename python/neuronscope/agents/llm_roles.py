"""What each LLM role must answer: its prompt, JSON schema (sent as ``response_format`` where the server takes
one: llama.cpp, vLLM, OpenAI), completion budget and validator.

A small model (1.5B parameters) writes prose around JSON, empty lists, conditions that are not conditions, labels
that are code, and the same probe twice. The schema makes most of that impossible at the sampler; the validator
rejects what is left with a message the model sees in one corrective retry (``LLMClient.chat_json``); after
that the agent falls back (``llm_agents.py``) and the transcript says so. ``max_tokens`` fits each answer, so a
runaway reply is cut early instead of generating for minutes at a few tokens per second.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

_STR = {"type": "string"}
_TOKENS = {"type": "array", "items": {"type": "string", "minLength": 1, "maxLength": 40}, "minItems": 1,
           "maxItems": 24}
_PATTERN = {"type": "string", "minLength": 1, "maxLength": 80}


def _kind(name: str, props: dict[str, Any], required: list[str]) -> dict[str, Any]:
    return {"type": "object", "properties": {"kind": {"const": name}, **props}, "required": ["kind", *required],
            "additionalProperties": False}


_ATOMS = [
    _kind("token", {"tokens": _TOKENS}, ["tokens"]),
    _kind("token_regex", {"pattern": _PATTERN}, ["pattern"]),
    _kind("prev_token", {"tokens": _TOKENS, "offset": {"type": "integer", "minimum": 1, "maximum": 8}},
          ["tokens"]),
    _kind("preceding_regex", {"pattern": _PATTERN, "window": {"type": "integer", "minimum": 1, "maximum": 16}},
          ["pattern"]),
]
_ATOMS.append(_kind("position", {"start": {"type": "integer", "minimum": 0, "maximum": 31},
                                  "stop": {"type": "integer", "minimum": 1, "maximum": 32}}, ["stop"]))
_NOT = _kind("not", {"condition": {"anyOf": _ATOMS}}, ["condition"])
CONDITION_SCHEMA: dict[str, Any] = {"anyOf": [*_ATOMS, _NOT, _kind("all", {"conditions": {
    "type": "array", "items": {"anyOf": [*_ATOMS, _NOT]}, "minItems": 2, "maxItems": 3}}, ["conditions"])]}
"""One condition of the condition language (``prompts/conditions.md``); ``not`` wraps an atom and ``all`` nests
one level of atoms and negated atoms."""


def _obj(props: dict[str, Any]) -> dict[str, Any]:
    return {"type": "object", "properties": props, "required": list(props), "additionalProperties": False}


def _list(items: dict[str, Any], lo: int, hi: int) -> dict[str, Any]:
    return {"type": "array", "items": items, "minItems": lo, "maxItems": hi}


_LABEL = {"type": "string", "minLength": 2, "maxLength": 48}
_DESCRIPTION = {"type": "string", "minLength": 8, "maxLength": 240}


@dataclass(frozen=True)
class Role:
    prompt: str
    """Name of the prompt in ``prompts/``."""
    schema: dict[str, Any]
    max_tokens: int
    hint: str
    """The expected shape, shown to the model in the corrective retry."""


ROLES: dict[str, Role] = {
    "hypothesis": Role("hypothesis", _obj({"hypotheses": _list({"type": "string", "minLength": 3, "maxLength": 80},
                                                               1, 6)}),
                       200, '{"hypotheses": ["short phrase", ...]}'),
    "decomposition": Role("decomposition", _obj({"components": _list(_obj({
        "hypothesis": {"type": "string", "maxLength": 80}, "condition": CONDITION_SCHEMA}), 1, 8)}),
                          700, '{"components": [{"hypothesis": "...", "condition": {"kind": "token", ...}}]}'),
    "explainer": Role("explainer", _obj({"label": _LABEL, "description": _DESCRIPTION}),
                      120, '{"label": "a few words", "description": "one sentence"}'),
    "refinement": Role("refinement", _obj({
        "modes": _list(_obj({"label": _LABEL, "description": _DESCRIPTION,
                             "conditions": _list(CONDITION_SCHEMA, 1, 4)}), 1, 6),
        "probes": _list({"type": "string", "minLength": 3, "maxLength": 160}, 0, 3)}),
                       800, '{"modes": [{"label": "...", "description": "...", "conditions": [...]}], '
                            '"probes": ["...", ...]}'),
    "single_pass": Role("single_pass", _obj({"description": _DESCRIPTION,
                                             "conditions": _list(CONDITION_SCHEMA, 1, 4)}),
                        320, '{"description": "one sentence", "conditions": [{"kind": "token", ...}]}'),
}

_CODEY = re.compile(r'[{}\[\]]|"kind"|\bkind\s*:|\b(?:token_regex|prev_token|preceding_regex)\b|\\[dwsbDWS]')


def natural_language(text: Any, what: str, *, min_words: int = 1, max_words: int = 40) -> str:
    """``text`` if it reads as a phrase or sentence about meaning (not JSON, a condition, a regex or code)."""
    if not isinstance(text, str) or not text.strip():
        raise ValueError(f"{what} must be a non-empty string")
    text = " ".join(text.split())
    if _CODEY.search(text):
        raise ValueError(f"{what} must be plain words about what the tokens mean, not code or a condition: "
                         f"{text[:60]!r}")
    words = len(text.split())
    if not min_words <= words <= max_words:
        raise ValueError(f"{what} must have {min_words}-{max_words} words, has {words}")
    if not re.search(r"[^\W\d_]{2}", text):
        raise ValueError(f"{what} must contain words: {text[:60]!r}")
    return text


def _nonempty_list(obj: Any, key: str) -> list:
    if not isinstance(obj, dict) or not isinstance(obj.get(key), list) or not obj[key]:
        raise ValueError(f'expected {{"{key}": [...]}} with at least one item')
    return obj[key]


def check_hypotheses(obj: Any) -> list[str]:
    out = []
    for h in _nonempty_list(obj, "hypotheses"):
        if isinstance(h, str) and h.strip() and h.strip().lower() not in {x.lower() for x in out}:
            out.append(" ".join(h.split())[:80])
    if not out:
        raise ValueError("the hypotheses must be non-empty strings")
    return out


def check_components(obj: Any) -> list:
    return [c for c in _nonempty_list(obj, "components") if isinstance(c, dict)]


def check_label(obj: Any) -> dict[str, str]:
    if not isinstance(obj, dict):
        raise ValueError('expected {"label": "...", "description": "..."}')
    label = natural_language(obj.get("label"), "label", max_words=6)
    desc = natural_language(obj.get("description"), "description", min_words=3)
    return {"label": label[:48], "description": desc[:240]}


def check_modes(obj: Any) -> dict[str, Any]:
    modes = [m for m in _nonempty_list(obj, "modes") if isinstance(m, dict)]
    if not modes:
        raise ValueError('"modes" must hold objects with label, description and conditions')
    probes = obj.get("probes") if isinstance(obj.get("probes"), list) else []
    return {"modes": modes, "probes": [p for p in probes if isinstance(p, str)]}


def check_single_pass(obj: Any) -> dict[str, Any]:
    if not isinstance(obj, dict):
        raise ValueError('expected {"description": "...", "conditions": [...]}')
    desc = natural_language(obj.get("description"), "description", min_words=3)
    conds = obj.get("conditions") if isinstance(obj.get("conditions"), list) else []
    return {"description": desc[:240], "conditions": conds}
