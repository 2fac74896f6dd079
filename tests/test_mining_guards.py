"""``mine`` reruns never mix or mislabel runs, and a kill leaves nothing behind (issue 17 items 1, 3, 17):
a checkpoint of another batch size is refused, a finished store of other settings is refused (naming the
keys), temp files of a killed run are cleared, writes are fsynced and get plain file modes, and a real
SIGKILL of ``neuronscope mine`` resumes to the store an uninterrupted run writes."""

from __future__ import annotations

import json
import os
import signal
import stat
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest
import torch

from neuronscope import MiningConfig, StoreError, mine, open_store
from neuronscope.cli import main
from neuronscope.errors import ConfigError
from neuronscope.io import atomic_dir, remove_stale_temps, write_safetensors
from neuronscope.mining.run import _Interrupted
from neuronscope.stage import output_lock

KW = dict(config=MiningConfig(k=8, samples_per_stratum=2), max_tokens=3000, seq_len=128, layers=[1], progress=False)
"""MiniLM layer 1 over 3,000 pydoc tokens: 24 sequences of 128 positions."""


def hidden(path: Path) -> list[str]:
    return sorted(p.name for p in path.iterdir() if p.name.startswith("."))


# item 1: a checkpoint is resumed only by a run of the same batch size


@pytest.mark.parametrize(("first", "second"), [(256, 512), (512, 256)])
def test_resume_with_another_batch_size_is_refused(tmp_path, minilm, first, second):
    out = tmp_path / "s"
    with pytest.raises(_Interrupted):
        mine(minilm, "pydoc", out, batch_tokens=first, _stop_after_batches=2, **KW)
    with pytest.raises(StoreError, match=f"batch_tokens: {first} then, {second} now") as e:
        mine(minilm, "pydoc", out, batch_tokens=second, **KW)
    assert "\n" not in str(e.value)
    assert not (out / "manifest.json").exists()
    assert (out / "checkpoint" / "manifest.json").exists()  # nothing was overwritten
    store = mine(minilm, "pydoc", out, batch_tokens=first, **KW)  # the same batch size resumes
    assert store.n_tokens_seen == 3000
    assert store.stats(1).count.tolist() == [3000] * store.n_neurons  # every position counted once


def test_resume_with_another_token_budget_names_it(tmp_path, minilm):
    out = tmp_path / "s"
    with pytest.raises(_Interrupted):
        mine(minilm, "pydoc", out, batch_tokens=256, _stop_after_batches=1, **KW)
    with pytest.raises(StoreError, match="max_tokens: 3000 stored, 2000 now"):
        mine(minilm, "pydoc", out, batch_tokens=256, **{**KW, "max_tokens": 2000})


# item 3: a finished store is returned only for the settings it was mined with


@pytest.fixture(scope="module")
def finished(minilm, tmp_path_factory):
    out = tmp_path_factory.mktemp("finished") / "s"
    mine(minilm, "pydoc", out, batch_tokens=1024, **KW)
    return out


@pytest.mark.parametrize(("change", "named"), [
    (dict(corpus="OTHER", layers=[3]), ["corpus: {'source': 'pydoc'", "layers: [1] stored, [3] now"]),
    (dict(model="other-model"), ["model: "]),
    (dict(batch_tokens=4096), ["batch_tokens: 1024 stored, 4096 now"]),
    (dict(max_tokens=None), ["max_tokens: 3000 stored, None now"]),
    (dict(seq_len=None), ["packing.seq_len: 128 stored, 512 now"]),
    (dict(packing="doc"), ["packing.mode: 'stream' stored, 'doc' now"]),
    (dict(dtype="bfloat16"), ["model.dtype: 'float32' stored, 'bfloat16' now"]),
    (dict(config=MiningConfig(k=16, samples_per_stratum=2)), ["mining.k: 8 stored, 16 now"]),
    (dict(part=(0, 2)), ["part: None stored, [0, 2] now"]),
])
def test_finished_store_of_other_settings_is_refused(finished, tmp_path, change, named):
    if change.get("corpus") == "OTHER":
        other = tmp_path / "other.jsonl"
        other.write_text('{"text": "a wholly different corpus"}\n')
        change = {**change, "corpus": str(other)}
    args = {"model": "minilm", "corpus": "pydoc", "batch_tokens": 1024, **KW, **change}
    before = (finished / "manifest.json").read_bytes()
    with pytest.raises(StoreError, match="finished store mined with another configuration") as e:
        mine(args.pop("model"), args.pop("corpus"), finished, **args)
    msg = str(e.value)
    assert "\n" not in msg
    for key in named:
        assert key in msg
    assert (finished / "manifest.json").read_bytes() == before


def test_cli_mine_on_a_finished_store_of_another_corpus_fails_cleanly(finished, tmp_path, capsys):
    """The issue's case: ``mine --corpus other.jsonl --layers 3 --out <finished store>`` printed the old store."""
    other = tmp_path / "other.jsonl"
    other.write_text('{"text": "a wholly different corpus"}\n')
    rc = main(["mine", "--corpus", str(other), "--layers", "3", "--k", "8", "--samples", "2", "--max-tokens", "3000",
               "--seq-len", "128", "--batch-tokens", "1024", "--quiet", "--out", str(finished)])
    err = capsys.readouterr()
    assert rc == 2
    assert err.out == ""
    assert err.err.count("\n") == 1
    assert "another configuration" in err.err
    assert "layers: [1] stored, [3] now" in err.err


def test_finished_store_of_the_same_settings_is_returned_by_name(finished):
    store = mine("minilm", "pydoc", finished, batch_tokens=1024, **KW)  # a name, not the loaded subject
    assert store.manifest["model"]["name"] != "minilm"  # the fixture passed a loaded subject: its id
    assert store.manifest["model"]["name"] == store.manifest["model"]["id"]
    assert store.n_tokens_seen == 3000


def test_manifest_names_the_model_as_given(tmp_path):
    store = mine("minilm", "pydoc", tmp_path / "s", max_tokens=300, seq_len=64, layers=[0], progress=False,
                 config=MiningConfig(k=2, samples_per_stratum=1))
    assert store.manifest["model"]["name"] == "minilm"
    assert Path(store.manifest["model"]["id"]).is_absolute()
    assert store.manifest["batch_tokens"] == 8192
    assert mine("minilm", "pydoc", tmp_path / "s", max_tokens=300, seq_len=64, layers=[0], progress=False,
                config=MiningConfig(k=2, samples_per_stratum=1)).path == store.path


def test_a_second_writer_is_refused(tmp_path, minilm):
    out = tmp_path / "s"
    with output_lock(out), pytest.raises(ConfigError, match=rf"being written by another process \(PID {os.getpid()}\)"):
        mine(minilm, "pydoc", out, batch_tokens=1024, **KW)
    assert not out.exists()


# item 17: leftovers of a kill are cleared, writes are durable, modes are those of a plain write


def _plant_leftovers(out: Path) -> list[str]:
    """What a kill leaves: a half-written checkpoint swap, layer file, manifest and token store."""
    ck = Path(tempfile.mkdtemp(dir=out, prefix=".checkpoint.", suffix=".tmp"))
    (ck / "layer_01.safetensors").write_bytes(b"\0" * 4096)
    for name in ("layer_01.safetensors", "manifest.json"):
        fd, _ = tempfile.mkstemp(dir=out, prefix=f".{name}.", suffix=".tmp")
        os.write(fd, b"\0" * 4096)
        os.close(fd)
    Path(tempfile.mkdtemp(dir=out, prefix=".tokens.", suffix=".tmp"), "tokens.bin").write_bytes(b"\0" * 64)
    return hidden(out)


def test_kill_leftovers_are_removed_on_resume(tmp_path, minilm):
    out = tmp_path / "s"
    with pytest.raises(_Interrupted):
        mine(minilm, "pydoc", out, batch_tokens=256, _stop_after_batches=2, **KW)
    assert len(_plant_leftovers(out)) == 4
    (out / ".notes.txt.k2j4.tmp").write_text("not mine's")  # what another program keeps there is not touched
    (out / ".settings.old").mkdir()
    mine(minilm, "pydoc", out, batch_tokens=256, **KW)
    assert hidden(out) == [".notes.txt.k2j4.tmp", ".settings.old"]
    assert not (out / "checkpoint").exists()
    assert hidden(out / "tokens") == []


def test_finished_store_loses_the_checkpoint_a_kill_left(finished):
    """A kill after the manifest was written but before the checkpoint was dropped."""
    (finished / "checkpoint").mkdir()
    (finished / "checkpoint" / "layer_01.safetensors").write_bytes(b"\0" * 4096)
    (finished / ".checkpoint.finished.tmp").mkdir()
    _plant_leftovers(finished)
    mine("minilm", "pydoc", finished, batch_tokens=1024, **KW)
    assert not (finished / "checkpoint").exists()
    assert hidden(finished) == []


def test_a_swap_cut_between_its_renames_keeps_the_previous_version(tmp_path):
    target = tmp_path / "checkpoint"
    with atomic_dir(target) as d:
        (d / "manifest.json").write_text("old")
    # the kill: the previous version parked, the new one complete but not yet renamed into place
    os.replace(target, tmp_path / ".checkpoint.old")
    Path(tempfile.mkdtemp(dir=tmp_path, prefix=".checkpoint.", suffix=".tmp"), "manifest.json").write_text("new")
    remove_stale_temps(tmp_path)
    assert (target / "manifest.json").read_text() == "old"
    assert hidden(tmp_path) == []


def _record_fsyncs(monkeypatch) -> list[tuple]:
    import neuronscope.io as nio

    events: list[tuple] = []
    real_fsync, real_replace = os.fsync, os.replace

    def fsync(fd):
        events.append(("fsync", os.fstat(fd).st_ino))
        real_fsync(fd)

    def replace(src, dst):
        events.append(("replace", os.stat(src).st_ino, Path(dst)))
        real_replace(src, dst)

    monkeypatch.setattr(nio.os, "fsync", fsync)
    monkeypatch.setattr(nio.os, "replace", replace)
    return events


def _synced_then_renamed(events: list[tuple], path: Path) -> bool:
    """``path``'s inode was fsynced before it was renamed to ``path``, and its directory after."""
    moved = next(i for i, e in enumerate(events) if e[0] == "replace" and e[2] == path)
    ino, parent = events[moved][1], os.stat(path.parent).st_ino
    before = {e[1] for e in events[:moved] if e[0] == "fsync"}
    after = {e[1] for e in events[moved:] if e[0] == "fsync"}
    return ino in before and parent in after


def test_safetensors_and_directories_are_fsynced_before_the_rename(tmp_path, monkeypatch):
    events = _record_fsyncs(monkeypatch)
    write_safetensors(tmp_path / "a.safetensors", {"x": torch.arange(5)})
    assert _synced_then_renamed(events, tmp_path / "a.safetensors")
    events.clear()
    with atomic_dir(tmp_path / "d") as d:
        (d / "f.bin").write_bytes(b"abc")  # a plain write inside: the swap makes it durable
    inner = os.stat(tmp_path / "d" / "f.bin").st_ino
    assert _synced_then_renamed(events, tmp_path / "d")
    moved = next(i for i, e in enumerate(events) if e[0] == "replace")
    assert ("fsync", inner) in events[:moved]


def test_store_files_have_the_modes_of_a_plain_write(tmp_path, minilm):
    out = tmp_path / "s"
    with pytest.raises(_Interrupted):
        mine(minilm, "pydoc", out, batch_tokens=256, _stop_after_batches=2, **KW)
    (tmp_path / "plain").write_bytes(b"")
    (tmp_path / "plain_dir").mkdir()
    file_mode = stat.S_IMODE(os.stat(tmp_path / "plain").st_mode)
    dir_mode = stat.S_IMODE(os.stat(tmp_path / "plain_dir").st_mode)
    ckpt = {p.name: stat.S_IMODE(os.stat(p).st_mode) for p in (out / "checkpoint").iterdir()}
    assert ckpt == {"layer_01.safetensors": file_mode, "manifest.json": file_mode}
    assert stat.S_IMODE(os.stat(out / "checkpoint").st_mode) == dir_mode
    mine(minilm, "pydoc", out, batch_tokens=256, **KW)
    files = [*(out / "tokens").iterdir(), out / "manifest.json", out / "layer_01.safetensors"]
    modes = {str(p.relative_to(out)): stat.S_IMODE(os.stat(p).st_mode) for p in files}
    assert len(modes) == 5
    assert modes == dict.fromkeys(modes, file_mode)
    assert stat.S_IMODE(os.stat(out / "tokens").st_mode) == dir_mode


# acceptance: a real SIGKILL of `neuronscope mine` after a checkpoint, rerun, equals an uninterrupted run


def _mine_cmd(out: Path, checkpoint_seconds: float) -> list[str]:
    return [sys.executable, "-m", "neuronscope", "mine", "--model", "minilm", "--corpus", "pydoc", "--layers", "1",
            "--k", "8", "--samples", "2", "--max-tokens", "20000", "--seq-len", "128", "--batch-tokens", "256",
            "--checkpoint-seconds", str(checkpoint_seconds), "--quiet", "--out", str(out)]


def test_sigkill_after_a_checkpoint_resumes_to_the_uninterrupted_store(tmp_path):
    env = {**os.environ, "TOKENIZERS_PARALLELISM": "false", "OMP_NUM_THREADS": "1"}
    killed, fresh = tmp_path / "killed", tmp_path / "fresh"
    # 80 batches, a checkpoint after each: a few seconds of work left when the first checkpoint appears
    proc = subprocess.Popen(_mine_cmd(killed, 0), env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    deadline = time.monotonic() + 120
    while not (killed / "checkpoint" / "manifest.json").exists():
        assert proc.poll() is None, f"mine ended before a checkpoint: {proc.stderr.read().decode()[-2000:]}"
        assert time.monotonic() < deadline, "no checkpoint within 120 s"
        time.sleep(0.01)
    os.kill(proc.pid, signal.SIGKILL)
    assert proc.wait() == -signal.SIGKILL
    proc.stderr.close()
    assert not (killed / "manifest.json").exists()
    assert json.loads((killed / "checkpoint" / "manifest.json").read_text())["next_batch"] < 80

    for out, every in ((killed, 0), (fresh, 300)):
        done = subprocess.run(_mine_cmd(out, every), env=env, capture_output=True, text=True, timeout=300)
        assert done.returncode == 0, done.stderr[-2000:]
    a, b = open_store(killed), open_store(fresh)
    assert a.stats(1).equal(b.stats(1))  # every tensor, the float64 moments included, bit for bit
    untimed = [{k: v for k, v in s.manifest.items() if k != "seconds"} for s in (a, b)]
    assert untimed[0] == untimed[1]
    assert a.n_tokens_seen == 20000
    assert not (killed / "checkpoint").exists()
    assert hidden(killed) == []
