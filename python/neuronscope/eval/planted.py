"""Planted neurons: activations defined from known modes over a real token stream, stored as a NeuronStore.

Each planted neuron is a list of true modes (conditions + strength). Over every token of the base store's
corpus its activation is

    max over the modes that fire (each firing kept with probability ``keep``) of strength × (1 + 5% noise)
    + a small distractor activation on 0.5% of random tokens + N(0, 0.02 · max strength) everywhere,

mined with the same miner as real neurons into layer 0 of a store whose activation source (``activations.PlantedActivations``) reads
the planted values, so an explainer sees exactly the interface of a mined store. The ground truth (modes,
the neuron's type, near-duplicate groups that count as one mode) is written beside it.

The standard suite (``standard_suite``) holds 66 neurons: 12 monosemantic, 18 with 2 modes, 12 with 3,
6 with unequal strengths, 6 context-dependent (token X only after Y), 6 near-duplicate pairs that
should merge, 6 with a weak third mode.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from ..errors import ConfigError, StoreError
from ..explanations.conditions import ConditionEvaluator
from ..explanations.model import AllOf, Condition, PrevTokenIn, TokenIn, TokenRegex, condition_from_dict
from ..explanations.vocab import Vocab
from ..io import write_json
from ..mining.spec import MiningConfig
from ..mining.stats import LayerStats
from ..store import NeuronStore, open_store, write_manifest, write_stats

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


@dataclass
class TrueMode:
    label: str
    conditions: list[Condition]
    strength: float

    def to_dict(self) -> dict:
        return {"label": self.label, "conditions": [c.to_dict() for c in self.conditions], "strength": self.strength}

    @classmethod
    def from_dict(cls, d: dict) -> TrueMode:
        return cls(d["label"], [condition_from_dict(c) for c in d["conditions"]], float(d["strength"]))


@dataclass
class PlantedNeuron:
    kind: str
    """mono, 2-mode, 3-mode, unequal, context, duplicate or weak."""
    modes: list[TrueMode]
    groups: list[list[int]]
    """Which true modes count as one (near-duplicates should be merged): lists of mode indices."""
    keep: float = 0.9

    def to_dict(self) -> dict:
        return {"kind": self.kind, "modes": [m.to_dict() for m in self.modes], "groups": self.groups, "keep": self.keep}

    @classmethod
    def from_dict(cls, d: dict) -> PlantedNeuron:
        return cls(d["kind"], [TrueMode.from_dict(m) for m in d["modes"]], d["groups"], float(d.get("keep", 0.9)))


def standard_suite(seed: int = 0) -> list[PlantedNeuron]:
    """The 66-neuron suite (see the module docstring), deterministic for ``seed``."""
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
        ms = [TrueMode(f"{name[0]} (a)", [TokenIn(toks[:half])], s), TrueMode(f"{name[0]} (b)", [TokenIn(toks[half:])], s)]
        out.append(PlantedNeuron("duplicate", ms, [[0, 1]]))
    for _ in range(6):
        a, b, c = pick(3)
        ms = [mode(a, 3.0), mode(b, 2.5), mode(c, 0.6)]
        out.append(PlantedNeuron("weak", ms, alone(ms)))
    return out


def mode_masks(neuron: PlantedNeuron, evaluator: ConditionEvaluator, ids: torch.Tensor,
               seg: torch.Tensor) -> np.ndarray:
    """(n_modes, T) bool: where each true mode's conditions hold."""
    rows = [np.any([evaluator.evaluate(c, ids, seg).numpy() for c in m.conditions], axis=0) for m in neuron.modes]
    return np.stack(rows) if rows else np.zeros((0, len(ids)), dtype=bool)


def planted_activations(neurons: list[PlantedNeuron], evaluator: ConditionEvaluator, ids: torch.Tensor,
                        seg: torch.Tensor, seed: int = 0) -> np.ndarray:
    """(T, N) float32 activations of the planted neurons over the token stream (see the module docstring)."""
    rng = np.random.default_rng([seed, 1])
    t = len(ids)
    out = np.zeros((t, len(neurons)), dtype=np.float32)
    for j, nrn in enumerate(neurons):
        masks = mode_masks(nrn, evaluator, ids, seg)
        top = max(m.strength for m in nrn.modes)
        act = np.zeros(t, dtype=np.float64)
        for m, mask in zip(nrn.modes, masks, strict=True):
            fire = mask & (rng.random(t) < nrn.keep)
            act = np.where(fire, np.maximum(act, m.strength * (1 + 0.05 * rng.standard_normal(t))), act)
        distract = rng.random(t) < 0.005
        act[distract] += 0.15 * top * rng.random(int(distract.sum()))
        act += 0.02 * top * rng.standard_normal(t)
        out[:, j] = act
    return out


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
    tok = base.tokens
    vocab = Vocab.from_tokenizer(base.tokenizer())
    ev = ConditionEvaluator(vocab)
    ids = torch.from_numpy(tok.tokens[:].astype(np.int64))
    seg = torch.from_numpy(tok.doc_of(np.arange(tok.n_tokens)).astype(np.int64))
    acts = planted_activations(neurons, ev, ids, seg, seed)
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
