"""The LLM simulator: predicted activations from a free-text explanation, as OpenAI's neuron-explainer defines it.

A token's prediction is the **expected value** of the model's distribution over the answers ``0`` … ``10``:
only alternatives whose token text is *exactly* one of ``"0"``, ``"1"``, …, ``"10"`` count (no stripping, no
``int()`` of ``" 5"``, ``"05"``, Arabic-Indic digits or ``"²"``), renormalised over themselves; a position with
none of them — or no distribution at all — predicts 0 and is counted in :attr:`LLMSimulator.stats`
(``missing``). Predictions are on the 0-10 scale (Pearson ignores scale). Three methods, chosen per server
(``method="auto"`` tries them in this order and remembers what worked):

``prompt`` — OpenAI's *all at once*: one text prompt lists every token as ``token<TAB>unknown``; the server
  scores the prompt (``/completions`` with ``echo`` and ``logprobs=15``: OpenAI's legacy API, and vLLM, which
  serves it from its ``prompt_logprobs``), and the distribution *at each* ``unknown`` is the prediction. No
  answer depends on another answer.
``generated`` — for servers that return logprobs of generated tokens only (llama.cpp, Ollama, most hosted
  chat APIs): the model answers ``index<TAB>activation`` per line at temperature 0 and the distribution at the
  first token after each tab is read. Unlike ``prompt``, position *i*'s distribution is conditioned on the
  model's own greedy answers before it. Documented in the README.
``json`` — servers with no logprobs at all: the answered integers themselves (not OpenAI's method; say so).

**"10" as two tokens.** Tokenizers that split digits (Qwen2, Llama-2, SmolLM2, Gemma) have no ``"10"``
token: ``P("1")`` then holds both 1 and 10. It is split with the probability ``q`` that ``"0"`` follows the
``"1"`` (renormalised against the line ending; other continuations such as ``"15"`` are not answers):
``P(1) = P("1")(1-q)``, ``P(10) = P("1")q``. In ``prompt`` mode the tokenizer is recognised from the echoed
example line ``…<TAB>10`` and ``q`` comes from a second scoring pass with every placeholder replaced by ``1``.
In ``generated`` mode ``q`` is read at the token after a sampled ``"1"``; where another value was sampled, the
continuation was never computed, and the ``"1"`` mass counts as 1 (``ten_unsplit`` in the stats).
"""

from __future__ import annotations

import asyncio
import math
import re
from collections import Counter
from collections.abc import Mapping, Sequence
from typing import Literal

import numpy as np
import torch

from ..explanations.model import Explanation
from ..prompts import load_prompt
from .evidence import WindowBatch
from .simulate import Simulation

VALID_ANSWERS = tuple(str(i) for i in range(11))
"""The only token texts that count as answers (upstream's ``VALID_ACTIVATION_TOKENS``)."""
_VALUE = {t: i for i, t in enumerate(VALID_ANSWERS)}
_INDEX_TAB = re.compile(r"^\s*([0-9]+)\t$")
PLACEHOLDER = "unknown"
Method = Literal["auto", "prompt", "generated", "json"]


def answer_distribution(alternatives: Sequence) -> dict[int, float]:
    """Unnormalised probabilities of the answers 0-10 among ``alternatives`` (TokenLogprob-like: ``token``,
    ``logprob``): exact token texts only, as upstream's ``parse_top_logprobs``."""
    out: dict[int, float] = {}
    for alt in alternatives:
        v = _VALUE.get(alt.token)
        if v is not None and alt.logprob is not None and v not in out:
            out[v] = math.exp(alt.logprob)
    return out


def _ends_line(token: str) -> bool:
    return token.startswith(("\n", "\r")) or token.strip() == "" or (token.startswith("<") and token.endswith(">"))


def ten_share(next_alternatives: Sequence) -> float | None:
    """q = P("0" follows a "1") among the continuations that make an answer ("0": 10; the line's end: 1)."""
    p0 = p_end = 0.0
    for alt in next_alternatives:
        if alt.logprob is None:
            continue
        if alt.token == "0":
            p0 += math.exp(alt.logprob)
        elif _ends_line(alt.token):
            p_end += math.exp(alt.logprob)
    return p0 / (p0 + p_end) if p0 + p_end > 0 else None


def split_ten(dist: dict[int, float], q: float | None) -> dict[int, float]:
    """Moves the share ``q`` of P("1") to 10 (see the module docstring); ``q=None`` leaves it as 1."""
    if q is None or 1 not in dist:
        return dist
    p1 = dist[1]
    out = {**dist, 1: p1 * (1.0 - q)}
    out[10] = out.get(10, 0.0) + p1 * q
    return out


def expected_value(dist: Mapping[int, float]) -> float | None:
    """Σ v·p / Σ p over the answers; None when there is none (the caller predicts 0 and counts it missing)."""
    total = sum(dist.values())
    if total <= 0:
        return None
    return sum(v * p for v, p in dist.items()) / total


def _alts(tok) -> tuple:
    """A position's alternatives, the sampled/echoed token included."""
    alts = tuple(tok.top_logprobs or ())
    return alts if any(a.token == tok.token for a in alts) else (*alts, tok)


def generated_expected_values(logprobs: Sequence, n: int, stats: Counter | None = None) -> np.ndarray:
    """(n,) float: from the logprobs of a generated ``index<TAB>activation`` reply (the ``generated`` method)."""
    stats = stats if stats is not None else Counter()
    out = np.zeros(n, dtype=np.float64)
    seen = np.zeros(n, dtype=bool)
    toks = list(logprobs or ())
    line, no_dist = "", 0
    for k, tok in enumerate(toks):
        piece = tok.token
        m = _INDEX_TAB.match(line)
        if m:  # the first token after "index<TAB>": the answer position (whatever was sampled there)
            idx = int(m.group(1)) - 1
            if 0 <= idx < n and not seen[idx]:
                dist = answer_distribution(_alts(tok))
                if 1 in dist and 10 not in dist:  # a digit-splitting tokenizer: "1" may begin "10"
                    if piece == "1" and k + 1 < len(toks):
                        dist = split_ten(dist, ten_share(_alts(toks[k + 1])))
                        stats["ten_split"] += 1
                    else:
                        stats["ten_unsplit"] += 1
                ev = expected_value(dist)
                seen[idx] = True
                if ev is None:
                    no_dist += 1
                    stats["missing_distribution"] += 1
                else:
                    out[idx] = ev
        if "\n" in piece:
            line = piece.rsplit("\n", 1)[1]
        else:
            line += piece
    unseen = int((~seen).sum())
    stats["missing_line"] += unseen  # no "index<TAB>" line for the token
    stats["missing"] += unseen + no_dist
    stats["positions"] += n
    return out


def _show(piece: str) -> str:
    """A token as one line of the prompt (newlines and tabs made visible, so the format holds)."""
    return piece.replace("\n", "\\n").replace("\t", "\\t").replace("\r", "\\r")


def all_at_once_prompt(explanation: str, pieces: Sequence[str], fill: str = PLACEHOLDER) -> tuple[str, list[int],
                                                                                                    int]:
    """(prompt text, character offset of each token's placeholder, offset of the example's ``10``)."""
    p = load_prompt("simulator_all_at_once")
    head = f"{p.system}\n\n{p.user.format(explanation=explanation)}\n<start>\n"
    ten = head.rfind("\t10\n") + 1
    text, offsets = head, []
    for piece in pieces:
        text += f"{_show(piece)}\t"
        offsets.append(len(text))
        text += f"{fill}\n"
    return text + "<end>\n", offsets, ten


def _at_offsets(logprobs: Sequence, offsets: Sequence[int]) -> dict[int, int]:
    """token index of the echoed token that starts at each character offset (where one does)."""
    where = {tok.text_offset: k for k, tok in enumerate(logprobs) if tok.text_offset is not None}
    return {off: where[off] for off in offsets if off in where}


class _NoPromptLogprobs(Exception):
    """The server did not echo the prompt's logprobs (llama.cpp ignores ``echo``)."""


class LLMSimulator:
    """A Simulator (see ``scoring.simulate``) backed by an ``LLMClient``; use ``asimulate`` inside a running loop.

    ``stats`` counts, over everything simulated: ``positions``, ``missing`` (predicted 0 for want of a
    distribution), ``ten_split``/``ten_unsplit`` and the windows done by each ``method:...``.
    """

    name = "llm"

    def __init__(self, llm, vocab, *, method: Method = "auto", top_logprobs: int = 15,
                 use_logprobs: bool = True) -> None:
        self.llm = llm
        self.vocab = vocab
        self.method: Method = method if use_logprobs else "json"
        self.top_logprobs = top_logprobs
        self.stats: Counter = Counter()
        self._ten_tokens: int | None = None
        """1 or 2: how the server's tokenizer writes "10" (from the prompt method's echo)."""

    async def _prompt(self, text: str, pieces: list[str]) -> np.ndarray:
        from ..llm import LLMLogprobsUnavailable

        prompt, offsets, ten_at = all_at_once_prompt(text, pieces)
        try:
            res = await self.llm.complete(prompt, logprobs=self.top_logprobs, echo=True, max_tokens=1)
        except LLMLogprobsUnavailable:
            raise _NoPromptLogprobs from None
        lps = res.logprobs or ()
        if not lps or lps[0].text_offset not in (0, None) or "".join(t.token for t in lps)[: len(prompt)] != prompt:
            raise _NoPromptLogprobs
        if any(t.text_offset is None for t in lps):  # offsets from the token texts themselves
            acc, fixed = 0, []
            for t in lps:
                fixed.append(type(t)(t.token, t.logprob, t.top_logprobs, acc))
                acc += len(t.token)
            lps = tuple(fixed)
        at = _at_offsets(lps, [*offsets, ten_at])
        if self._ten_tokens is None and ten_at in at:
            self._ten_tokens = 1 if lps[at[ten_at]].token == "10" else 2
        qs: list[float | None] = [None] * len(pieces)
        if self._ten_tokens == 2:  # second pass: "1" in every placeholder, q read at the token after it
            prompt1, offsets1, _ = all_at_once_prompt(text, pieces, fill="1")
            res1 = await self.llm.complete(prompt1, logprobs=self.top_logprobs, echo=True, max_tokens=1)
            at1 = _at_offsets(res1.logprobs or (), [o + 1 for o in offsets1])
            qs = [ten_share(_alts(res1.logprobs[at1[o + 1]])) if o + 1 in at1 else None for o in offsets1]
        out = np.zeros(len(pieces), dtype=np.float64)
        for i, off in enumerate(offsets):
            ev = None
            if off in at:
                dist = answer_distribution(tuple(lps[at[off]].top_logprobs))
                if self._ten_tokens == 2 and 1 in dist:
                    dist = split_ten(dist, qs[i])
                    self.stats["ten_split" if qs[i] is not None else "ten_unsplit"] += 1
                ev = expected_value(dist)
            if ev is None:
                self.stats["missing"] += 1
            else:
                out[i] = ev
        self.stats["positions"] += len(pieces)
        return out

    async def _generated(self, text: str, pieces: list[str]) -> np.ndarray:
        p = load_prompt("simulator")
        listing = "\n".join(f"{i + 1}\t{_show(s)}" for i, s in enumerate(pieces))
        res = await self.llm.chat(p.messages(explanation=text, tokens=listing), logprobs=True,
                                  top_logprobs=self.top_logprobs, max_tokens=8 * len(pieces) + 16)
        return generated_expected_values(res.logprobs, len(pieces), self.stats)

    async def _json(self, text: str, pieces: list[str]) -> np.ndarray:
        p = load_prompt("simulator_json")
        n = len(pieces)

        def check(obj):
            acts = obj.get("activations") if isinstance(obj, dict) else None
            if not isinstance(acts, list) or len(acts) != n or not all(
                    isinstance(a, (int, float)) and not isinstance(a, bool) for a in acts):
                raise ValueError(f'expected {{"activations": [{n} numbers]}}')
            return acts

        schema = {"type": "object", "required": ["activations"], "properties": {"activations": {
            "type": "array", "minItems": n, "maxItems": n, "items": {"type": "integer", "minimum": 0,
                                                                     "maximum": 10}}}}
        res = await self.llm.chat_json(p.messages(explanation=text, tokens=repr(pieces), n=n), validator=check,
                                       json_schema=schema, max_tokens=4 * n + 32)
        self.stats["positions"] += n
        return np.clip(np.asarray(res.parsed, dtype=np.float64), 0, 10)

    async def _window(self, text: str, pieces: list[str]) -> np.ndarray:
        from ..llm import LLMHTTPError, LLMLogprobsUnavailable

        if self.method in ("auto", "prompt"):
            try:
                out = await self._prompt(text, pieces)
                self.method = "prompt"
                self.stats["method:prompt"] += 1
                return out
            except (_NoPromptLogprobs, LLMHTTPError):
                if self.method == "prompt":
                    raise
                self.method = "generated"  # this server scores no prompts: every later window generates
        if self.method == "generated":
            try:
                out = await self._generated(text, pieces)
                self.stats["method:generated"] += 1
                return out
            except LLMLogprobsUnavailable:
                self.method = "json"  # no logprobs at all
        out = await self._json(text, pieces)
        self.stats["method:json"] += 1
        return out

    async def asimulate(self, explanations: Sequence[Explanation], batch: WindowBatch,
                        calibration: WindowBatch | None = None) -> list[Simulation]:
        out = []
        for e in explanations:
            text = e.summary
            windows = [[self.vocab.pieces[i] for i in w.ids.tolist()] for w in batch.windows]
            parts = [await self._window(text, windows[0])] if windows else []  # settles the method once
            parts += await asyncio.gather(*(self._window(text, ps) for ps in windows[1:]))
            whole = torch.from_numpy(np.concatenate(parts) if parts else np.zeros(0)).to(torch.float32)
            out.append(Simulation(whole=whole, modes=torch.zeros((0, whole.shape[0]))))
        return out

    def simulate(self, explanations: Sequence[Explanation], batch: WindowBatch,
                 calibration: WindowBatch | None = None) -> list[Simulation]:
        """Synchronous wrapper (not from inside a running event loop)."""
        return asyncio.run(self.asimulate(explanations, batch, calibration))


class BlockingLLMSimulator:
    """An LLM simulator for synchronous callers (``neuronscope score --simulator llm``): one client per call."""

    name = "llm"

    def __init__(self, config, vocab, cache_path: str | None = None, method: Method = "auto") -> None:
        self.config, self.vocab, self.cache_path, self.method = config, vocab, cache_path, method
        self.stats: Counter = Counter()

    def simulate(self, explanations: Sequence[Explanation], batch: WindowBatch,
                 calibration: WindowBatch | None = None) -> list[Simulation]:
        from ..llm import LLMClient, ResponseCache

        async def go() -> list[Simulation]:
            cache = ResponseCache(self.cache_path) if self.cache_path else None
            try:
                async with LLMClient(self.config, cache=cache) as client:
                    sim = LLMSimulator(client, self.vocab, method=self.method)
                    try:
                        return await sim.asimulate(explanations, batch, calibration)
                    finally:
                        self.stats.update(sim.stats)
                        self.method = sim.method
            finally:
                if cache is not None:
                    cache.close()

        return asyncio.run(go())
