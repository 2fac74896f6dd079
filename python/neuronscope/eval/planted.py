"""Planted neurons: activations defined from known modes over a real token stream, stored as a NeuronStore.

Each planted neuron is a list of true modes (``definition``: conditions or a feature, with a strength).
Over every token of the base store's corpus its activation is

    max over the modes that fire (each firing kept with probability ``keep``) of value × (1 + 5% noise)
    + a small distractor activation on 0.5% of random tokens + N(0, 0.02 · max strength) everywhere,

where a mode's value is its strength (graded modes: strength × level, ``definition.feature_level``),
mined with the same miner as real neurons into layer 0 of a store whose activation source
(``activations.PlantedActivations``) reads the planted values, so an explainer sees exactly the interface
of a mined store; probe texts get the same definition without noise (``definition.definition``). The
ground truth (modes, the neuron's family, near-duplicate groups that count as one mode) is written beside it.

The standard suite (``standard_suite``) holds 102 neurons. 66 inside the condition grammar
(``grammar_suite``): 12 monosemantic, 18 with 2 modes, 12 with 3, 6 with unequal strengths, 6
context-dependent (token X only after Y), 6 near-duplicate pairs that should merge, 6 with a weak third
mode; and 36 beyond it (``families.open_families``, 6 each): word-list categories, graded number
magnitude, multi-word phrases, document position, overlapping modes, modes that differ only by context.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import torch

from ..errors import ConfigError, StoreError
from ..explanations.model import AllOf, Condition, PrevTokenIn, TokenIn, TokenRegex
from ..explanations.vocab import Vocab
from ..io import write_json
from ..mining.spec import MiningConfig
from ..mining.stats import LayerStats
from ..store import NeuronStore, open_store, write_manifest, write_stats
from .definition import PlantedNeuron, TokenStream, TrueMode, mode_values
from .families import open_families

__all__ = ["CONCEPTS", "CONTEXTS", "PlantedNeuron", "TrueMode", "build_planted_store", "corpus_stream",
           "grammar_suite", "mode_masks", "planted_activations", "read_ground_truth", "standard_suite"]

# Concepts that occur in the pydoc corpus (and in most English/code corpora).
CONCEPTS: dict[str, Condition] = {
    "python keywords": TokenIn(("def", "class", "return", "import", "lambda", "yield", "while", "pass", "raise")),
    "numbers": TokenRegex(r"^\d+$"),
    "brackets": TokenIn(("(", ")", "[", "]", "{", "}")),
    "quotes": TokenIn(('"', "'", "`")),
    "comparisons": TokenIn(("equal", "less", "greater", "than", "compare", "compared", "comparison")),
    "errors": TokenIn(("error", "errors", "exception", "exceptions", "raised", "fail", "failure", "traceback")),
    "types": TokenIn(("int", "float", "str", "list", "dict", "tuple", "bytes", "bool")),
    "files": TokenIn(("file", "files", "path", "directory", "open", "read", "write")),
    "modal verbs": TokenIn(("may", "must", "should", "can", "could", "will", "would")),
    "negation": TokenIn(("not", "no", "never", "none", "neither", "nor", "cannot")),
    "ordinals": TokenIn(("first", "second", "third", "last", "next", "previous", "final")),
    "operators": TokenIn(("+", "-", "*", "/", "%", "=", "<", ">")),
    "module names": TokenIn(("os", "sys", "math", "json", "re", "string", "io", "socket")),
    "-ing words": TokenRegex(r"[a-z]ing$"),
    "punctuation": TokenIn((".", ",", ";", ":")),
    "pronouns": TokenIn(("it", "they", "this", "these", "those", "its", "their")),
    "size words": TokenIn(("large", "small", "big", "long", "short", "size", "length")),
    "logic words": TokenIn(("and", "or", "if", "else", "then", "true", "false")),
}
CONTEXTS: list[tuple[str, Condition]] = [
    ("numbers in brackets", AllOf((TokenRegex(r"^\d+$"), PrevTokenIn(("(", "["), 1)))),
    ("words after 'the'", AllOf((TokenRegex(r"^[a-z]+$", case_sensitive=True), PrevTokenIn(("the",), 1)))),
    ("names after 'import'", AllOf((TokenRegex(r"^[a-z_]+$", case_sensitive=True), PrevTokenIn(("import",), 1)))),
    ("words after 'a'", AllOf((TokenRegex(r"^[a-z]+$", case_sensitive=True), PrevTokenIn(("a", "an"), 1)))),
    ("tokens after '.'", AllOf((TokenRegex(r"^\w+$"), PrevTokenIn((".",), 1)))),
    ("words after 'to'", AllOf((TokenRegex(r"^[a-z]+$", case_sensitive=True), PrevTokenIn(("to",), 1)))),
]


def standard_suite(seed: int = 0) -> list[PlantedNeuron]:
    """The 102-neuron suite: ``grammar_suite`` then ``families.open_families``, deterministic for ``seed``."""
    return grammar_suite(seed) + open_families(seed)


def grammar_suite(seed: int = 0) -> list[PlantedNeuron]:
    """The 66 neurons inside the condition grammar (see the module docstring), deterministic for ``seed``."""
    rng = np.random.default_rng(seed)
    names = list(CONCEPTS)

    def pick(k: int) -> list[str]:
        return [names[i] for i in rng.choice(len(names), size=k, replace=False)]

    def mode(name: str, strength: float) -> TrueMode:
        return TrueMode(name, [CONCEPTS[name]], round(float(strength), 3))

    def alone(modes: list[TrueMode]) -> list[list[int]]:
        return [[i] for i in range(len(modes))]

    out: list[PlantedNeuron] = []
    for _ in range(12):
        ms = [mode(pick(1)[0], rng.uniform(1.5, 4))]
        out.append(PlantedNeuron("mono", ms, alone(ms)))
    for _ in range(18):
        ms = [mode(n, rng.uniform(1.5, 4)) for n in pick(2)]
        out.append(PlantedNeuron("2-mode", ms, alone(ms)))
    for _ in range(12):
        ms = [mode(n, rng.uniform(1.5, 4)) for n in pick(3)]
        out.append(PlantedNeuron("3-mode", ms, alone(ms)))
    for _ in range(6):
        a, b = pick(2)
        ms = [mode(a, 3.0), mode(b, 0.8)]
        out.append(PlantedNeuron("unequal", ms, alone(ms)))
    for i in range(6):
        label, cond = CONTEXTS[i]
        ms = [TrueMode(label, [cond], 3.0), mode(pick(1)[0], 1.5)]
        out.append(PlantedNeuron("context", ms, alone(ms)))
    for _ in range(6):
        name = [n for n in pick(3) if isinstance(CONCEPTS[n], TokenIn) and len(CONCEPTS[n].tokens) >= 4][:1]
        name = name or ["types"]
        toks = CONCEPTS[name[0]].tokens
        half = len(toks) // 2
        s = round(float(rng.uniform(2, 3.5)), 3)
        ms = [TrueMode(f"{name[0]} (a)", [TokenIn(toks[:half])], s),
              TrueMode(f"{name[0]} (b)", [TokenIn(toks[half:])], s)]
        out.append(PlantedNeuron("duplicate", ms, [[0, 1]]))
    for _ in range(6):
        a, b, c = pick(3)
        ms = [mode(a, 3.0), mode(b, 2.5), mode(c, 0.6)]
        out.append(PlantedNeuron("weak", ms, alone(ms)))
    return out


def mode_masks(neuron: PlantedNeuron, stream: TokenStream) -> np.ndarray:
    """(n_modes, T) bool: where each true mode fires (its firing set, what explained modes are matched to)."""
    return mode_values(neuron, stream) > 0


def planted_activations(neurons: list[PlantedNeuron], stream: TokenStream, seed: int = 0) -> np.ndarray:
    """(T, N) float32 activations of the planted neurons over the token stream (see the module docstring)."""
    rng = np.random.default_rng([seed, 1])
    t = len(stream)
    out = np.zeros((t, len(neurons)), dtype=np.float32)
    for j, nrn in enumerate(neurons):
        values = mode_values(nrn, stream)
        top = max(m.strength for m in nrn.modes)
        act = np.zeros(t, dtype=np.float64)
        for v in values:
            fire = (v > 0) & (rng.random(t) < nrn.keep)
            act = np.where(fire, np.maximum(act, v * (1 + 0.05 * rng.standard_normal(t))), act)
        distract = rng.random(t) < 0.005
        act[distract] += 0.15 * top * rng.random(int(distract.sum()))
        act += 0.02 * top * rng.standard_normal(t)
        out[:, j] = act
    return out


def corpus_stream(store: NeuronStore) -> TokenStream:
    """The whole corpus of a store as one token stream (documents as segments)."""
    tok = store.tokens
    return TokenStream(tok.tokens[:].astype(np.int64), tok.doc_of(np.arange(tok.n_tokens)).astype(np.int64),
                       Vocab.from_tokenizer(store.tokenizer()))


def build_planted_store(base: str | Path | NeuronStore, out: str | Path, neurons: list[PlantedNeuron] | None = None,
                        *, seed: int = 0, config: MiningConfig | None = None) -> NeuronStore:
    """Writes the planted neurons as layer 0 of a NeuronStore at ``out`` over ``base``'s corpus; returns it.

    Reuses ``out`` when it already holds the same suite (same seed and neurons).
    """
    from ..mining.backend import resolve_backend

    base = base if isinstance(base, NeuronStore) else open_store(base)
    neurons = neurons if neurons is not None else standard_suite(seed)
    out = Path(out)
    spec = {"seed": seed, "neurons": [n.to_dict() for n in neurons], "base": str(base.path.resolve())}
    if (out / "manifest.json").exists() and (out / "ground_truth.json").exists():
        try:
            if json.loads((out / "ground_truth.json").read_text()) == spec:
                return open_store(out)
        except json.JSONDecodeError:
            pass
    out.mkdir(parents=True, exist_ok=True)
    (out / "manifest.json").unlink(missing_ok=True)  # not a store until rewritten
    acts = planted_activations(neurons, corpus_stream(base), seed)
    np.save(out / "planted_activations.npy", acts)
    cfg = config or MiningConfig.from_dict(base.manifest["mining"])
    _, miner = resolve_backend(None, "cpu")
    st = LayerStats.empty(len(neurons), cfg)
    step = 8192
    for a in range(0, len(acts), step):
        miner(st, torch.from_numpy(acts[a : a + step]), torch.arange(a, min(a + step, len(acts))), 0, cfg)
    write_stats(out, {0: st})
    write_json(out / "ground_truth.json", spec)
    manifest = {k: v for k, v in base.manifest.items() if k != "format"}
    manifest.update(layers=[0], n_neurons=len(neurons), n_layers_model=1, mining=cfg.to_dict(),
                    token_store=str((base.path / base.manifest.get("token_store", "tokens")).resolve()),
                    sequences=base.manifest.get("sequences"), tokens_seen=len(acts),
                    planted={"activations": "planted_activations.npy", "ground_truth": "ground_truth.json",
                             "feature_layer": int(base.manifest.get("n_layers_model", 2)) // 2})
    write_manifest(out, manifest)
    return open_store(out)


def read_ground_truth(store: NeuronStore) -> list[PlantedNeuron]:
    """The planted neurons of a planted store (index i = neuron i of layer 0)."""
    planted = store.manifest.get("planted")
    if not planted:
        raise StoreError(f"{store.path} is not a planted store")
    try:
        spec = json.loads((store.path / planted["ground_truth"]).read_text())
    except (OSError, json.JSONDecodeError) as e:
        raise StoreError(f"{store.path}: unreadable ground truth ({e})") from None
    if len(spec["neurons"]) != store.n_neurons:
        raise ConfigError(f"{store.path}: ground truth has {len(spec['neurons'])} neurons, the store {store.n_neurons}")
    return [PlantedNeuron.from_dict(d) for d in spec["neurons"]]
