"""Search a run's neurons by what they do: the query against every mode description, nearest first.

Each mode of each explained neuron is one entry; its text (label and description) is embedded with
all-MiniLM-L6-v2 (mean-pooled, L2-normalised), and the vectors go into a faiss inner-product index
(exact cosine; a few thousand entries need nothing approximate). The index is saved with the run::

    search/index.faiss     the faiss index (when faiss is installed)
    search/vectors.npy     (E, 384) float32 embeddings (the same search without faiss, and a rebuild source)
    search/entries.json    per entry: layer, index, method, mode, label, description, score;
                           plus the fingerprint of the explanations file it was built from

A neuron matches as well as its best mode; results are one per neuron.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from .errors import ConfigError, StoreError
from .io import fingerprint, read_jsonl, write_text

FORMAT = 1
EMBEDDER = "all-MiniLM-L6-v2"


@dataclass
class SearchHit:
    layer: int
    index: int
    similarity: float
    """Cosine similarity of the query and the neuron's best-matching mode."""
    label: str
    description: str
    method: str
    mode: int
    score: float | None
    """Held-out score of the explanation the mode belongs to."""

    def to_dict(self) -> dict:
        return asdict(self)


def _faiss():
    try:
        import faiss
    except ImportError:
        return None
    return faiss


def _entries(rows: list[dict], method: str) -> list[dict]:
    out = []
    for r in rows:
        if r.get("method") != method:
            continue
        e = r.get("explanation") or {}
        score = (r.get("heldout") or {}).get("score")
        for j, m in enumerate(e.get("modes") or []):
            if m.get("kind", "mode") != "mode":  # the background and context terms are not meanings to search for
                continue
            out.append({"layer": int(r["layer"]), "index": int(r["index"]), "method": method, "mode": j,
                        "label": str(m.get("label", "")), "description": str(m.get("description", "")),
                        "score": score})
    return out


def build_index(explanations: str | Path, out: str | Path, *, method: str = "neuronscope") -> int:
    """Embeds every mode of ``method``'s explanations and saves the index under ``out``; returns the entry count."""
    from .embedding import embed_texts

    explanations, out = Path(explanations), Path(out)
    rows = read_jsonl(explanations, "an explanations file")
    entries = _entries(rows, method)
    if not entries:
        methods = sorted({r.get("method") for r in rows})
        raise ConfigError(f"{explanations}: no modes of method {method!r} to index (methods there: {methods})")
    vecs = embed_texts([f"{e['label']}: {e['description']}" for e in entries]).numpy().astype(np.float32)
    out.mkdir(parents=True, exist_ok=True)
    tmp = out / "vectors.npy.tmp"
    with open(tmp, "wb") as f:
        np.save(f, vecs)
    tmp.replace(out / "vectors.npy")
    faiss = _faiss()
    if faiss is not None:
        index = faiss.IndexFlatIP(vecs.shape[1])
        index.add(vecs)
        faiss.write_index(index, str(out / "index.faiss.tmp"))
        (out / "index.faiss.tmp").replace(out / "index.faiss")
    meta = {"format": FORMAT, "embedder": EMBEDDER, "method": method, "source": explanations.name,
            "fingerprint": fingerprint(explanations), "entries": entries}
    write_text(out / "entries.json", json.dumps(meta))  # last: a directory without it is no index
    return len(entries)


def index_is_current(explanations: str | Path, out: str | Path) -> bool:
    """True when ``out`` holds an index built from exactly this explanations file."""
    meta_path = Path(out) / "entries.json"
    if not meta_path.exists() or not Path(explanations).exists():
        return False
    try:
        meta = json.loads(meta_path.read_text())
    except (OSError, ValueError):
        return False
    return meta.get("format") == FORMAT and meta.get("fingerprint") == fingerprint(explanations)


class SearchIndex:
    """A saved index: ``SearchIndex(run_dir / "search").query("numbers in code", k=10)``."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        meta_path = self.path / "entries.json"
        if not meta_path.exists():
            raise StoreError(f"{self.path}: no search index here (run `neuronscope run` or build_index first)")
        try:
            meta = json.loads(meta_path.read_text())
            self.entries: list[dict] = meta["entries"]
        except (OSError, ValueError, KeyError) as e:
            raise StoreError(f"{meta_path}: corrupt search index metadata ({e})") from None
        self.meta = meta
        faiss = _faiss()
        self._faiss_index = None
        if faiss is not None and (self.path / "index.faiss").exists():
            try:
                self._faiss_index = faiss.read_index(str(self.path / "index.faiss"))
            except RuntimeError as e:
                raise StoreError(f"{self.path / 'index.faiss'}: unreadable faiss index ({e})") from None
            n = self._faiss_index.ntotal
        else:
            try:
                self._vecs = np.load(self.path / "vectors.npy")
            except (OSError, ValueError) as e:
                raise StoreError(f"{self.path / 'vectors.npy'}: unreadable embeddings ({e})") from None
            n = len(self._vecs)
        if n != len(self.entries):
            raise StoreError(f"{self.path}: index holds {n} vectors but entries.json lists {len(self.entries)}")

    @property
    def backend(self) -> str:
        return "faiss" if self._faiss_index is not None else "numpy"

    def query(self, text: str, k: int = 10) -> list[SearchHit]:
        """The k neurons whose best mode is nearest to ``text``, most similar first."""
        from .embedding import embed_texts

        if not text.strip():
            raise ConfigError("search query is empty")
        if k <= 0:
            raise ConfigError(f"k must be positive, got {k}")
        q = embed_texts([text]).numpy().astype(np.float32)
        n = len(self.entries)
        if self._faiss_index is not None:
            sims, ids = self._faiss_index.search(q, n)
            sims, ids = sims[0], ids[0]
        else:
            s = self._vecs @ q[0]
            ids = np.argsort(-s, kind="stable")
            sims = s[ids]
        hits: list[SearchHit] = []
        seen: set[tuple[int, int]] = set()
        for sim, i in zip(sims.tolist(), ids.tolist(), strict=True):
            if i < 0:
                continue
            e = self.entries[i]
            key = (e["layer"], e["index"])
            if key in seen:
                continue
            seen.add(key)
            hits.append(SearchHit(e["layer"], e["index"], float(sim), e["label"], e["description"], e["method"],
                                  e["mode"], e.get("score")))
            if len(hits) == k:
                break
        return hits


def search(query: str, run: str | Path, k: int = 10) -> list[SearchHit]:
    """Neurons of the run at ``run`` whose mode descriptions are nearest to ``query``."""
    return SearchIndex(Path(run) / "search").query(query, k)
