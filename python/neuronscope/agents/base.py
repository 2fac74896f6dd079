"""The seam every explainer sits behind: one interface, one config, one result type.

An explainer (offline NeuronScope, LLM NeuronScope, single-pass offline or LLM) turns one neuron's
:class:`~neuronscope.scoring.evidence.NeuronEvidence` into an :class:`AgentResult`; the ``explain``
stage driver (``agents/explain.py`` over ``stage.py``) runs any of them the same way: resume, chunks,
failure records, retries and atomic writes are the driver's, never the explainer's.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass, field

from ..explanations.model import Explanation
from ..scoring.evidence import NeuronEvidence


@dataclass
class AgentConfig:
    """Settings of the NeuronScope loop, shared by the offline and LLM backends (train-only decisions)."""

    active_frac: float = 0.2
    """Activating tokens: train activation ≥ this share of the train maximum."""
    min_precision: float = 0.5
    """Keep a condition when its mean activation where it fires ≥ this share of the activating threshold."""
    max_modes: int = 8
    """A safety cap on modes; the mode cost and the earning rule decide well before it."""
    min_mode_share: float = 0.02
    """Clusters holding less than this share of the activating mass are merged into their nearest neighbour."""
    merge_similarity: float = 0.5
    """Two modes may be merged for parsimony only if the centred centroids of their activating tokens
    have at least this cosine (different concepts are near-orthogonal once the common direction is gone)."""
    merge_similarity_low: float = 0.1
    """Below this cosine two modes never merge; between it and ``merge_similarity`` they merge only when their
    typical strengths are within ``merge_strength_tol`` of each other."""
    merge_strength_tol: float = 0.1
    """Typical strengths within this share of the larger are "alike". Strength is weak evidence of one meaning:
    at 0.2, two meanings a sixth apart (3.0 and 2.5 on planted neurons) merged on feature cosines near 0.2."""
    cluster_distance: float | None = 0.6
    """Average-linkage cut (cosine distance) for grouping components; None = best-silhouette automatic cut."""
    rounds: int = 4
    probes_per_mode: int = 6
    probe_rounds: int = 2
    """Rounds that fetch probes (each costs subject-model forward passes)."""
    neighbour_probes: bool = False
    """Probes also fetch corpus windows on the words nearest in meaning to each word mode's words
    (``feedback.store_probe``). Off by default: on MiniLM it bought +0.003 held-out Score over the token table
    and +0.008 planted recall, and doubled the agent's time per real neuron (2.6 → 5.3 s), which takes
    ``neuronscope eval --suite all`` past its 15-minute budget on 2 cores."""
    survey_windows: int = 64
    """The subject model is asked for this many windows on the neuron's strongest activations outside its
    evidence and as many at random positions (``feedback.store_survey``; a lookup where the layer is prepared),
    joined to the train evidence at the first refinement round. The stored evidence is 32 top and 32 random
    windows: on 200 MiniLM neurons the survey lifted held-out Score over the token table (fitted on the stored
    evidence only) from +0.017 to +0.035, +0.009 over a token table fitted on the same survey; 128 bought
    +0.004 more on 40 neurons at 1.5× the agent time; 0 turns it off."""
    survey_bands: int = 3
    """With a lookup, half the strongest survey windows are spread over this many activation bands below the top
    (``feedback.store_survey``); 0: all on the strongest. On the planted suite 3 bands lifted mode recall 0.835 →
    0.858 and precision 0.927 → 0.940 (weaker meanings get windows); on 40 real MiniLM neurons held-out Score
    over the token table +0.035 → +0.034, median meanings 3 → 2."""
    prune_frac: float = 0.3
    """False positive: a token of a set whose own mean activation is below this share of the mode's strength."""
    single_pass_tokens: int = 12
    """Tokens of the ``top-tokens`` strawman."""
    lookup_tokens: int = 1000
    """Rows of the ``single-pass`` token look-up table at most."""
    mode_cost: float = 0.004
    """Refinement maximises train score − ``mode_cost`` × modes: a new mode must buy more than this, a merge or
    drop that loses less is taken."""
    min_mode_cover: float = 0.05
    """The earning rule (``OfflineNeuronScope.earn``): a meaning fires on activating tokens in at least this
    share of the train windows that hold activating tokens ..."""
    background_tokens: int = 1000
    """Tokens in the background term at most (each at its own mean train activation; as many as the look-up table)."""
    min_mode_gain: float = 0.01
    """... and removing it loses at least this much train score (else it is merged, background or dropped) ..."""
    broad_mode_cover: float = 0.15
    """... or, for a mode firing on activating tokens in at least this share of those windows, ..."""
    broad_mode_gain: float = 0.005
    """... at least this much (``earning.earns``)."""
    similar_words: int = 20
    """The background term reads a word it does not list by this many nearest listed words in meaning
    (``Mode.similar``), when that raises the cross-validated train score by ``similar_min_gain``; 0: never."""
    similar_min_gain: float = 0.0005
    context_shifts: int = 32
    """The context term (``context_shifts``): at most this many neighbouring tokens that add to the activation
    of whatever token they are next to; 0 turns it off."""
    context_min_gain: float = 0.0003
    """A neighbour earns a shift when its cross-validated shift removes at least this share of the train
    variance."""
    context_shrink: float = 2.0
    """Pseudo-occurrences that shrink a shift toward 0 (a neighbour seen a few times moves little)."""


OfflineConfig = AgentConfig
"""Former name of :class:`AgentConfig` (kept for one release)."""


@dataclass
class AgentResult:
    """What an explainer returns for one neuron."""

    explanation: Explanation
    transcript: list[dict] = field(default_factory=list)
    round_scores: list[dict] = field(default_factory=list)
    seconds: float = 0.0



class Explainer(ABC):
    """Explains one neuron at a time. ``method`` and ``backend`` name it in the output lines."""

    method: str
    backend: str

    @abstractmethod
    async def explain(self, evidence: NeuronEvidence) -> AgentResult:
        """One neuron's explanation from its evidence (train split only; held-out data is the scorer's)."""
