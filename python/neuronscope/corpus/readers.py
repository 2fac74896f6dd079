"""Streaming document readers: .txt, .jsonl, .parquet, saved Hugging Face datasets, and ``pydoc``.

Every reader yields documents (``str``) and counts what it skips (invalid UTF-8, invalid JSON, a missing
or non-string field, text holding a lone surrogate, empty documents) in a shared :class:`SkipCounts`,
reported at the end of a run. A file that cannot be opened or parsed as a whole raises CorpusError naming
the file. A hostile JSONL line is one skipped line, never a traceback: nesting too deep for Python's
parser counts as ``invalid_json``; a ``"\\ud800"`` escape (valid JSON, no valid text) as ``invalid_unicode``;
numbers are never converted to ``int`` (only the text field is used), so a 5,000-digit number beside the
text costs nothing, and one in place of the text is a ``missing_field``.
"""

from __future__ import annotations

import glob
import gzip
import json
import os
import re
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import BinaryIO, Literal

from ..errors import CorpusError

DocSplit = Literal["paragraph", "line", "file"]
SUFFIXES = (".txt", ".txt.gz", ".jsonl", ".jsonl.gz", ".json", ".parquet")
_SURROGATE = re.compile(r"[\ud800-\udfff]")


@dataclass
class SkipCounts:
    """Skipped inputs by reason (``invalid_utf8``, ``invalid_json``, ``missing_field``, ``invalid_unicode``,
    ``empty``)."""

    counts: Counter = field(default_factory=Counter)

    def add(self, reason: str, n: int = 1) -> None:
        self.counts[reason] += n

    @property
    def total(self) -> int:
        return sum(self.counts.values())

    def as_dict(self) -> dict[str, int]:
        return dict(sorted(self.counts.items()))

    def __str__(self) -> str:
        if not self.total:
            return "nothing skipped"
        return "skipped " + ", ".join(f"{n} {reason.replace('_', ' ')}" for reason, n in sorted(self.counts.items()))


@dataclass(frozen=True)
class CorpusSpec:
    """Where documents come from and how to read them."""

    source: str
    """``pydoc``, a file, a directory (all supported files inside, or a saved HF dataset) or a glob."""
    text_field: str = "text"
    """Field holding the text in .jsonl / .parquet / HF datasets."""
    doc_split: DocSplit = "paragraph"
    """How a .txt file is cut into documents: blank-line paragraphs, lines, or the whole file."""
    split: str = "train"
    """Split of a saved HF ``DatasetDict``."""


def _open(path: Path) -> BinaryIO:
    try:
        return gzip.open(path, "rb") if path.suffix == ".gz" else open(path, "rb")
    except OSError as e:
        raise CorpusError(f"cannot open corpus file {path}: {e}") from e


def _decode(raw: bytes, skips: SkipCounts) -> str | None:
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError:
        skips.add("invalid_utf8")
        return None


def read_txt(path: Path, skips: SkipCounts, doc_split: DocSplit = "paragraph") -> Iterator[str]:
    """Documents of a text file; a line with invalid UTF-8 is skipped (and counted), not the file."""
    if doc_split not in ("paragraph", "line", "file"):
        raise CorpusError(f"doc_split must be paragraph, line or file, got {doc_split!r}")
    para: list[str] = []
    with _open(path) as f:
        try:
            for raw in f:
                line = _decode(raw, skips)
                if line is None:
                    continue
                if doc_split == "line":
                    text = line.rstrip("\r\n")
                    if text.strip():
                        yield text
                    else:
                        skips.add("empty")
                elif doc_split == "paragraph" and not line.strip():
                    if para:
                        yield "".join(para).rstrip("\r\n")
                        para = []
                else:
                    para.append(line)
        except (OSError, EOFError) as e:
            raise CorpusError(f"cannot read corpus file {path}: {e}") from e
    if para:
        text = "".join(para).rstrip("\r\n")
        if text.strip():
            yield text
        else:
            skips.add("empty")


def _text_of(record: object, text_field: str, skips: SkipCounts) -> str | None:
    if not isinstance(record, dict) or text_field not in record or not isinstance(record[text_field], str):
        skips.add("missing_field")
        return None
    text = record[text_field]
    if not text.isascii() and _SURROGATE.search(text):  # "\ud800" in JSON: no UTF-8 form, tokenizers refuse it
        skips.add("invalid_unicode")
        return None
    if not text.strip():
        skips.add("empty")
        return None
    return text


def read_jsonl(path: Path, skips: SkipCounts, text_field: str = "text") -> Iterator[str]:
    """One document per JSON line, from ``text_field``."""
    with _open(path) as f:
        try:
            for raw in f:
                if not raw.strip():
                    skips.add("empty")
                    continue
                line = _decode(raw, skips)
                if line is None:
                    continue
                try:
                    # parse_int=float: no int conversion, so no digit limit (ValueError) on huge numbers.
                    record = json.loads(line, parse_int=float)
                except (ValueError, RecursionError):  # JSONDecodeError is a ValueError; deep nesting recurses
                    skips.add("invalid_json")
                    continue
                text = _text_of(record, text_field, skips)
                if text is not None:
                    yield text
        except (OSError, EOFError) as e:
            raise CorpusError(f"cannot read corpus file {path}: {e}") from e


def _read_arrow_batches(batches: Iterator, where: str, skips: SkipCounts, text_field: str) -> Iterator[str]:
    for batch in batches:
        if text_field not in batch.schema.names:
            raise CorpusError(f"{where} has no column {text_field!r} (columns: {batch.schema.names})")
        for value in batch.column(batch.schema.names.index(text_field)).to_pylist():
            text = _text_of({text_field: value}, text_field, skips)
            if text is not None:
                yield text


def read_parquet(path: Path, skips: SkipCounts, text_field: str = "text") -> Iterator[str]:
    """Documents of a Parquet file's ``text_field`` column, streamed by record batch."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    try:
        pf = pq.ParquetFile(path)
        if text_field not in pf.schema_arrow.names:
            raise CorpusError(f"{path} has no column {text_field!r} (columns: {pf.schema_arrow.names})")
        yield from _read_arrow_batches(pf.iter_batches(columns=[text_field]), str(path), skips, text_field)
    except (pa.ArrowException, OSError) as e:
        raise CorpusError(f"cannot read Parquet file {path}: {e}") from e


def read_hf_dataset(path: Path, skips: SkipCounts, text_field: str = "text", split: str = "train") -> Iterator[str]:
    """Documents of a dataset saved with ``datasets.Dataset.save_to_disk`` (Arrow stream files)."""
    import pyarrow as pa

    if (path / "dataset_dict.json").exists():
        splits = json.loads((path / "dataset_dict.json").read_text()).get("splits", [])
        if split not in splits:
            raise CorpusError(f"{path} has no split {split!r} (splits: {splits})")
        path = path / split
    state_file = path / "state.json"
    try:
        files = [f["filename"] for f in json.loads(state_file.read_text())["_data_files"]]
    except (OSError, KeyError, TypeError, json.JSONDecodeError) as e:
        raise CorpusError(f"{path} is not a saved Hugging Face dataset (bad or missing state.json): {e}") from e
    for name in files:
        try:
            with pa.memory_map(str(path / name)) as source:
                reader = pa.ipc.open_stream(source)
                yield from _read_arrow_batches(iter(reader), str(path / name), skips, text_field)
        except (pa.ArrowException, OSError) as e:
            raise CorpusError(f"cannot read Arrow file {path / name}: {e}") from e


def read_pydoc(skips: SkipCounts) -> Iterator[str]:
    """CPython's ``pydoc_data.topics``: 80-odd help topics of real English, always installed."""
    from pydoc_data.topics import topics

    for key in sorted(topics):
        text = topics[key]
        if text.strip():
            yield text
        else:
            skips.add("empty")


def _is_hf_dataset(path: Path) -> bool:
    return (path / "state.json").exists() or (path / "dataset_dict.json").exists()


def corpus_files(source: str) -> list[Path]:
    """The files a (non-pydoc) source names, in a deterministic order."""
    path = Path(source)
    if path.is_dir():
        if _is_hf_dataset(path):
            return [path]
        files = sorted(p for p in path.rglob("*") if p.is_file() and str(p).endswith(SUFFIXES))
        if not files:
            raise CorpusError(f"directory {source} holds no corpus file (looked for {', '.join(SUFFIXES)})")
        return files
    if path.is_file():
        if not str(path).endswith(SUFFIXES):
            raise CorpusError(f"unsupported corpus file {source}: expected one of {', '.join(SUFFIXES)}")
        return [path]
    matches = sorted(Path(p) for p in glob.glob(source, recursive=True) if os.path.isfile(p))
    if matches:
        return matches
    raise CorpusError(f"corpus {source!r} not found (not 'pydoc', a file, a directory or a matching glob)")


def iter_documents(spec: CorpusSpec, skips: SkipCounts) -> Iterator[str]:
    """All documents of ``spec`` in a deterministic order."""
    if spec.source == "pydoc":
        yield from read_pydoc(skips)
        return
    for path in corpus_files(spec.source):
        name = str(path)
        if path.is_dir():
            yield from read_hf_dataset(path, skips, spec.text_field, spec.split)
        elif name.endswith((".jsonl", ".jsonl.gz", ".json")):
            yield from read_jsonl(path, skips, spec.text_field)
        elif name.endswith(".parquet"):
            yield from read_parquet(path, skips, spec.text_field)
        else:
            yield from read_txt(path, skips, spec.doc_split)
