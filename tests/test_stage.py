"""The stage driver (``stage.py``): resume, failure records and retries, atomic writes on interruption — and
both explain paths (offline, LLM) interrupted half-way and resumed to what an uninterrupted run writes."""

from __future__ import annotations

import json

import pytest

from llm_server import ScriptedServer
from neuronscope.agents import explain
from neuronscope.agents.llm_agents import LLMNeuronScope
from neuronscope.agents.offline import OfflineNeuronScope
from neuronscope.errors import ConfigError, LLMError, StoreError
from neuronscope.scoring.run import StoreSource
from neuronscope.stage import Stage, guarded, run_stage
from test_agents_llm import fake_llm


class Killed(BaseException):
    """A kill half-way through (like Ctrl-C, a BaseException that no ``except Exception`` catches)."""


def _toy_stage(calls: list, fail: set, interrupt_at: int | None = None) -> Stage:
    async def compute(layer, indices, todo, emit):
        for i in indices:
            calls.append((layer, i))
            if interrupt_at is not None and len(calls) == interrupt_at:
                raise Killed

            async def job(i=i):
                if (layer, i) in fail:
                    raise LLMError("server said no")
                return {"layer": layer, "index": i, "value": layer * 100 + i}

            emit(await guarded({"layer": layer, "index": i}, job()))

    return Stage(what="a toy file", row_key=lambda r: (r["layer"], r["index"]), compute=compute, chunk=2,
                 keys=lambda layer, i: [(layer, i)])


def test_driver_records_failures_and_retries_only_them(tmp_path):
    out = tmp_path / "toy.jsonl"
    neurons = [(0, i) for i in range(5)] + [(2, 1)]
    calls: list = []
    stage = _toy_stage(calls, fail={(0, 3)})
    rows = run_stage(stage, out, neurons, progress=False)
    assert len(rows) == 6
    bad = [r for r in rows if "error" in r]
    assert bad == [{"layer": 0, "index": 3, "error": "LLMError: server said no"}]
    assert stage.failures == bad
    assert [json.loads(x) for x in out.read_text().splitlines()] == rows
    calls.clear()
    rows2 = run_stage(_toy_stage(calls, fail=set()), out, neurons, progress=False)
    assert calls == [(0, 3)]  # only the failed neuron is redone
    assert sorted((r["layer"], r["index"]) for r in rows2) == sorted(neurons)
    assert not any("error" in r for r in rows2)


def test_driver_keeps_finished_rows_when_interrupted(tmp_path):
    out = tmp_path / "toy.jsonl"
    neurons = [(0, i) for i in range(6)]
    calls: list = []
    with pytest.raises(Killed):
        run_stage(_toy_stage(calls, set(), interrupt_at=4), out, neurons, progress=False)
    kept = [json.loads(x) for x in out.read_text().splitlines()]
    assert [(r["layer"], r["index"]) for r in kept] == [(0, 0), (0, 1), (0, 2)]  # a chunk and a half
    calls.clear()
    rows = run_stage(_toy_stage(calls, set()), out, neurons, progress=False)
    assert calls == [(0, 3), (0, 4), (0, 5)]
    assert sorted(r["value"] for r in rows) == [0, 1, 2, 3, 4, 5]


def test_driver_names_a_line_without_its_key(tmp_path):
    out = tmp_path / "toy.jsonl"
    out.write_text('{"index": 3}\n')
    with pytest.raises(StoreError, match="lacks its key field"):
        run_stage(_toy_stage([], set()), out, [(0, 1)], progress=False)
    assert out.read_text() == '{"index": 3}\n'


def _comparable(rows: list[dict]) -> dict:
    """Rows by key without wall-clock fields."""
    out = {}
    for r in rows:
        r = {k: v for k, v in r.items() if k not in ("seconds", "usage")}
        out[(r["layer"], r["index"], r["method"])] = json.dumps(r, sort_keys=True)
    return out


def _interrupt_after(monkeypatch, cls, name: str, n: int) -> None:
    """Makes ``cls.name`` raise Killed on its n-th call (a Ctrl-C half-way through a run)."""
    real = getattr(cls, name)
    count = [0]

    def wrapped(self, *a, **k):
        count[0] += 1
        if count[0] == n:
            raise Killed
        return real(self, *a, **k)

    monkeypatch.setattr(cls, name, wrapped)


@pytest.mark.parametrize("backend", ["offline", "openai"])
def test_explain_interrupted_half_way_resumes_to_the_same_output(minilm_store, tmp_path, monkeypatch, backend):
    source = StoreSource(minilm_store)
    neurons = [(1, 0), (1, 1), (1, 2), (3, 4)]
    methods = ("neuronscope", "single-pass")
    kw = dict(methods=methods, backend=backend, rounds=2, chunk=2, progress=False)
    cls, name = (OfflineNeuronScope, "run") if backend == "offline" else (LLMNeuronScope, "arun")
    server = ScriptedServer(default=fake_llm()) if backend == "openai" else None
    with server or _null():
        if server is not None:
            kw["llm"] = {"base_url": server.url, "model": "scripted", "backoff_base_s": 0.01, "concurrency": 1,
                         "cache_path": None}
        whole = explain(source, neurons, tmp_path / "whole.jsonl", **kw)
        out = tmp_path / "cut.jsonl"
        with monkeypatch.context() as m:
            _interrupt_after(m, cls, name, 3)  # in the second chunk
            with pytest.raises(Killed):
                explain(source, neurons, out, **kw)
        kept = [json.loads(x) for x in out.read_text().splitlines()]
        assert {(r["layer"], r["index"]) for r in kept} >= {(1, 0), (1, 1)}  # the first chunk is on disk
        assert len(kept) < len(whole)
        resumed = explain(source, neurons, out, **kw)
    assert _comparable(resumed) == _comparable(whole)


class _null:
    def __enter__(self):
        return None

    def __exit__(self, *exc):
        return False


def test_output_that_is_a_directory_is_refused_before_any_work(tmp_path):
    calls: list = []
    with pytest.raises(ConfigError, match="is a directory"):
        run_stage(_toy_stage(calls, set()), tmp_path, [(0, 1)], progress=False)
    assert calls == []


def test_a_failed_write_keeps_the_rows_for_the_next_run(tmp_path, monkeypatch):
    import neuronscope.stage as stage_mod

    out = tmp_path / "toy.jsonl"
    real = stage_mod.write_jsonl

    def disk_full(path, rows):
        if path == out:
            raise OSError(28, "No space left on device")
        real(path, rows)

    calls: list = []
    monkeypatch.setattr(stage_mod, "write_jsonl", disk_full)
    with pytest.raises(StoreError, match=r"rows computed so far are in .*toy\.jsonl\.recovery"):
        run_stage(_toy_stage(calls, set()), out, [(0, 0), (0, 1), (0, 2)], progress=False)
    monkeypatch.undo()
    rec = tmp_path / "toy.jsonl.recovery"
    assert [json.loads(x)["index"] for x in rec.read_text().splitlines()] == [0, 1]  # the first chunk
    calls.clear()
    rows = run_stage(_toy_stage(calls, set()), out, [(0, 0), (0, 1), (0, 2)], progress=False)
    assert calls == [(0, 2)]  # the recovered rows are not recomputed
    assert sorted(r["index"] for r in rows) == [0, 1, 2]
    assert not rec.exists()
    assert [json.loads(x)["index"] for x in out.read_text().splitlines()] == [0, 1, 2]


def test_a_second_writer_is_refused_with_the_holders_pid(tmp_path):
    import subprocess
    import sys
    import time

    out = tmp_path / "toy.jsonl"
    holder = subprocess.Popen([sys.executable, "-c", (
        "import sys, time; from pathlib import Path; from neuronscope.stage import output_lock\n"
        f"with output_lock(Path({str(out)!r})):\n    print('held', flush=True); time.sleep(30)")],
        stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "held"
        with pytest.raises(ConfigError, match=rf"another process \(PID {holder.pid}\)"):
            run_stage(_toy_stage([], set()), out, [(0, 1)], progress=False)
    finally:
        holder.kill()
        holder.wait()
    time.sleep(0.1)
    rows = run_stage(_toy_stage([], set()), out, [(0, 1)], progress=False)  # a dead holder's lock is free
    assert [r["index"] for r in rows] == [1]
