"""The LLM simulator: predicted activations from a free-text explanation, OpenAI-style "all at once".

One request per window: the tokens are listed numbered and the model answers ``index<TAB>activation``
(0-10) per line. With logprobs, the prediction of a token is the *expected value* over the 0-10 answers
the model considered at that position (its top log-probabilities renormalised over the integers 0-10),
as in OpenAI's ``ev_correlation_score``; servers without logprobs get the JSON prompt instead and the
answered integers are used as they are. Predictions are on the 0-10 scale (Pearson ignores scale).
"""

from __future__ import annotations

import asyncio
import math
import re
from collections.abc import Sequence

import numpy as np
import torch

from ..explanations.model import Explanation
from ..prompts import load_prompt
from .evidence import WindowBatch
from .simulate import Simulation

_LINE = re.compile(r"^\s*(\d+)\s*\t\s*(\d+)")


def expected_values(text: str, logprobs, n: int) -> np.ndarray:
    """(n,) float: per token index, the expected 0-10 answer read off the reply's lines and their logprobs."""
    out = np.zeros(n, dtype=np.float64)
    seen = np.zeros(n, dtype=bool)
    if logprobs:
        # Walk the generated tokens, tracking which line we are on; the first integer token after a tab is the answer.
        line, after_tab, answered = "", False, False
        for tok in logprobs:
            piece = tok.token
            if "\n" in piece:
                line, after_tab, answered = piece.split("\n")[-1], False, False
                continue
            if after_tab and not answered and piece.strip().isdigit():
                m = re.match(r"\s*(\d+)", line)
                idx = int(m.group(1)) - 1 if m else -1
                probs, vals = [], []
                for alt in tok.top_logprobs or (tok,):
                    s = alt.token.strip()
                    if s.isdigit() and 0 <= int(s) <= 10 and alt.logprob is not None:
                        probs.append(math.exp(alt.logprob))
                        vals.append(int(s))
                if 0 <= idx < n and probs:
                    out[idx] = float(np.dot(probs, vals) / sum(probs))
                    seen[idx] = True
                answered = True
            line += piece
            if "\t" in piece:
                after_tab = True
    for raw in text.splitlines():  # whatever the logprobs did not cover: the answered integer itself
        m = _LINE.match(raw)
        if m:
            idx = int(m.group(1)) - 1
            if 0 <= idx < n and not seen[idx]:
                out[idx] = min(10, int(m.group(2)))
    return out


class LLMSimulator:
    """A Simulator (see ``scoring.simulate``) backed by an ``LLMClient``; use ``asimulate`` inside a running loop."""

    name = "llm"

    def __init__(self, llm, vocab, *, use_logprobs: bool = True, top_logprobs: int = 15) -> None:
        self.llm = llm
        self.vocab = vocab
        self.use_logprobs = use_logprobs
        self.top_logprobs = top_logprobs

    async def _window(self, text: str, pieces: list[str]) -> np.ndarray:
        from ..llm import LLMLogprobsUnavailable

        n = len(pieces)
        if self.use_logprobs:
            p = load_prompt("simulator")
            listing = "\n".join(f"{i + 1}\t{s!r}" for i, s in enumerate(pieces))
            try:
                res = await self.llm.chat(p.messages(explanation=text, tokens=listing), logprobs=True,
                                          top_logprobs=self.top_logprobs)
                return expected_values(res.text, res.logprobs, n)
            except LLMLogprobsUnavailable:
                self.use_logprobs = False  # this server has none: every later window goes the JSON way
        p = load_prompt("simulator_json")

        def check(obj):
            acts = obj.get("activations") if isinstance(obj, dict) else None
            if not isinstance(acts, list) or len(acts) != n or not all(isinstance(a, (int, float)) for a in acts):
                raise ValueError(f'expected {{"activations": [{n} numbers]}}')
            return acts

        res = await self.llm.chat_json(p.messages(explanation=text, tokens=repr(pieces), n=n), validator=check)
        return np.clip(np.asarray(res.parsed, dtype=np.float64), 0, 10)

    async def asimulate(self, explanations: Sequence[Explanation], batch: WindowBatch,
                        calibration: WindowBatch | None = None) -> list[Simulation]:
        out = []
        for e in explanations:
            text = e.summary
            parts = await asyncio.gather(*(self._window(text, [self.vocab.pieces[i] for i in w.ids.tolist()])
                                           for w in batch.windows))
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

    def __init__(self, config, vocab, cache_path: str | None = None) -> None:
        self.config, self.vocab, self.cache_path = config, vocab, cache_path

    def simulate(self, explanations: Sequence[Explanation], batch: WindowBatch,
                 calibration: WindowBatch | None = None) -> list[Simulation]:
        from ..llm import LLMClient, ResponseCache

        async def go() -> list[Simulation]:
            cache = ResponseCache(self.cache_path) if self.cache_path else None
            try:
                async with LLMClient(self.config, cache=cache) as client:
                    return await LLMSimulator(client, self.vocab).asimulate(explanations, batch, calibration)
            finally:
                if cache is not None:
                    cache.close()

        return asyncio.run(go())
