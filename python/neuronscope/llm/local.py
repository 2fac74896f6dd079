"""A local llama.cpp server that neuronscope starts and stops: ``--explain-backend local``.

    with local_server("qwen2.5-coder-1.5b") as server:
        async with LLMClient(server.config) as llm: ...

The server is llama.cpp's own (the ``xllamacpp`` wheel) in a **child process**, on 127.0.0.1, on a free port,
behind a random API key that only this process and the child know (passed through the environment, never on
a command line). The parent waits for ``/health``, hands out an :class:`~neuronscope.llm.LLMConfig` for the same
httpx client as any OpenAI-compatible server, and stops the child by its PID on exit, on Ctrl-C and on error:
SIGTERM, then SIGKILL after a grace period, then a check that the PID is gone. The child also dies with its
parent (``PR_SET_PDEATHSIG`` on Linux, and end-of-file on its stdin everywhere), so a killed run leaves no
server behind. A child process rather than a thread: llama.cpp's threads do not compete with torch inside one
process, a llama.cpp crash cannot take the run down, and a PID can always be killed.

Parallel slots default to the machine's cores (at most 4; continuous batching decodes them together), the
client's concurrency equals the slots, so every request in flight has a slot, and llama.cpp gets every core
but one (:func:`default_threads`).
"""

from __future__ import annotations

import contextlib
import json
import os
import secrets
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..errors import ConfigError, LLMError
from .config import LLMConfig

_SPEC_ENV = "NEURONSCOPE_LOCAL_SERVER_SPEC"
_KEY_ENV = "NEURONSCOPE_LOCAL_SERVER_KEY"


def machine_cores() -> int:
    """CPU cores this process may use."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # not Linux
        return max(1, os.cpu_count() or 1)


def default_threads() -> int:
    """llama.cpp threads: every core but one (at least 1). Its threads spin while they wait for each other, so
    one that shares its core with the run's own work (probe texts, scoring) or another process stalls them all:
    on a loaded 2-core machine SmolLM2 decodes at 55-80 tokens/s on 1 thread and under 1 token/s on 2."""
    return max(1, machine_cores() - 1)


def default_slots() -> int:
    """Parallel slots for this machine: one per core, at most 4 (more only lengthens each request on a CPU)."""
    return min(4, machine_cores())


def resolve_gguf(model: str) -> tuple[Path, str]:
    """(GGUF file, name the server reports) for a built-in name (``qwen2.5-coder-1.5b``) or a ``.gguf`` path."""
    from ..models.packaged import gguf_path, packaged

    spec = packaged(model)
    if spec is not None:
        return gguf_path(model), spec.name
    path = Path(model).expanduser()
    if path.suffix.lower() == ".gguf" and path.is_file():
        return path, path.stem
    from ..models.packaged import PACKAGED

    raise ConfigError(f"the local backend needs a built-in model ({', '.join(PACKAGED)}) or a .gguf file; "
                      f"got {model!r}")


def free_port() -> int:
    """A TCP port on 127.0.0.1 that was free a moment ago (the server is retried on another if it is taken)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass
class LocalServer:
    """A running local server: its child process, address and the client settings for it."""

    process: subprocess.Popen
    port: int
    config: LLMConfig
    log_path: Path
    slots: int
    started_s: float = 0.0
    """Seconds from spawning the child to a healthy ``/health``."""
    key_env: str = field(default="", repr=False)

    @property
    def pid(self) -> int:
        return self.process.pid

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def log_tail(self, n: int = 2000) -> str:
        try:
            return self.log_path.read_text(errors="replace")[-n:]
        except OSError:
            return ""


def pid_alive(pid: int) -> bool:
    """True while a process ``pid`` exists (a zombie counts as gone)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().split(") ", 1)[1][:1] != "Z"
    except (OSError, IndexError):
        return True


def stop_process(proc: subprocess.Popen, grace_s: float = 10.0) -> None:
    """Stops ``proc`` by its PID (stdin closed, SIGTERM, SIGKILL after ``grace_s``) and checks that it is gone."""
    if proc.poll() is None:
        try:
            if proc.stdin is not None:
                proc.stdin.close()
        except OSError:
            pass
        try:
            proc.send_signal(signal.SIGTERM)
            proc.wait(timeout=grace_s)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=30)
        except ProcessLookupError:
            pass
    else:
        proc.wait()
    if pid_alive(proc.pid) and proc.poll() is None:
        raise LLMError(f"the local LLM server (pid {proc.pid}) did not stop")


def _wait_healthy(server: LocalServer, timeout_s: float) -> None:
    import httpx

    deadline = time.monotonic() + timeout_s
    with httpx.Client(trust_env=False, timeout=5.0) as http:
        while True:
            code = server.process.poll()
            if code is not None:
                raise LLMError(f"the local LLM server exited with code {code} before it was ready; its log "
                               f"({server.log_path}) ends:\n{server.log_tail()}")
            try:
                r = http.get(f"{server.url}/health")
                if r.status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            if time.monotonic() > deadline:
                raise LLMError(f"the local LLM server was not ready after {timeout_s:.0f} s; its log ends:\n"
                               f"{server.log_tail()}")
            time.sleep(0.25)


@contextmanager
def local_server(model: str, *, slots: int | None = None, ctx_per_slot: int = 8192, threads: int | None = None,
                 startup_timeout_s: float = 600.0, log_dir: str | Path | None = None,
                 **llm_fields: Any) -> Iterator[LocalServer]:
    """Starts a llama.cpp server on ``model`` (built-in name or ``.gguf``), yields it, and always stops it.

    ``slots``: parallel sequences (default :func:`default_slots`); ``ctx_per_slot``: context tokens each;
    ``threads``: CPU threads (default :func:`default_threads`); ``llm_fields``: further :class:`LLMConfig`
    fields for the client (``cache_path``, ``max_tokens``, ``timeout_s`` ...); ``base_url``, ``api_key_env``
    and ``model`` are the server's. The yielded :attr:`LocalServer.config` is valid inside the block only.
    """
    path, name = resolve_gguf(model)
    slots = slots or default_slots()
    if slots < 1 or ctx_per_slot < 256:
        raise ConfigError(f"slots must be >= 1 and ctx_per_slot >= 256, got {slots} and {ctx_per_slot}")
    threads = threads or default_threads()
    key = secrets.token_urlsafe(32)
    log_root = Path(log_dir) if log_dir is not None else Path(tempfile.gettempdir())
    log_root.mkdir(parents=True, exist_ok=True)
    server: LocalServer | None = None
    log = None
    try:
        for attempt in range(3):  # the free port may be taken between probing and binding
            port = free_port()
            log_path = log_root / f"neuronscope-llama-{os.getpid()}-{port}.log"
            log = log_path.open("wb")
            spec = {"model": str(path), "alias": name, "port": port, "slots": slots, "n_ctx": slots * ctx_per_slot,
                    "threads": threads, "parent": os.getpid()}
            env = {**os.environ, _SPEC_ENV: json.dumps(spec), _KEY_ENV: key}
            t0 = time.monotonic()
            proc = subprocess.Popen([sys.executable, "-m", "neuronscope.llm.local"], stdin=subprocess.PIPE,
                                    stdout=log, stderr=subprocess.STDOUT, env=env, start_new_session=True)
            key_env = f"NEURONSCOPE_LOCAL_KEY_{proc.pid}"
            fields = {k: v for k, v in llm_fields.items() if k not in ("base_url", "api_key_env", "model")}
            fields.setdefault("concurrency", slots)
            fields.setdefault("timeout_s", 600.0)
            fields.setdefault("max_retries", 2)
            config = LLMConfig(base_url=f"http://127.0.0.1:{port}/v1", model=name, api_key_env=key_env, **fields)
            server = LocalServer(proc, port, config, log_path, slots, key_env=key_env)
            try:
                _wait_healthy(server, startup_timeout_s)
            except LLMError:
                stop_process(proc)
                log.close()
                if attempt < 2 and "bind" in server.log_tail().lower():
                    server = None
                    continue
                raise
            server.started_s = time.monotonic() - t0
            break
        assert server is not None
        os.environ[server.key_env] = key  # the client reads the key from the variable the config names
        yield server
    finally:
        if server is not None:
            os.environ.pop(server.key_env, None)
            stop_process(server.process)
        if log is not None:
            log.close()


# ----------------------------------------------------------------------------------------- the child process


def _die_with_parent(parent: int) -> None:
    """Linux: the kernel sends SIGTERM when the parent dies; everywhere: stdin's end-of-file stops us too."""
    if sys.platform.startswith("linux"):
        import ctypes

        with contextlib.suppress(OSError, AttributeError):
            ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG
    if os.getppid() != parent:  # the parent died before prctl took effect
        os._exit(1)


def _serve() -> None:
    spec = json.loads(os.environ[_SPEC_ENV])
    key = os.environ.pop(_KEY_ENV)
    _die_with_parent(int(spec["parent"]))
    signal.signal(signal.SIGTERM, lambda *_: os._exit(0))
    import xllamacpp as xlc

    params = xlc.CommonParams()
    params.model.path = spec["model"]
    params.model_alias = spec["alias"]
    params.hostnames = ["127.0.0.1"]
    params.port = int(spec["port"])
    params.api_keys = [key]
    params.n_parallel = int(spec["slots"])
    params.n_ctx = int(spec["n_ctx"])
    params.cpuparams.n_threads = int(spec["threads"])
    params.cpuparams_batch.n_threads = int(spec["threads"])
    params.warmup = False
    server = xlc.Server(params)  # serves HTTP from its own threads
    print(f"neuronscope: llama.cpp server at {server.listening_address}", flush=True)
    sys.stdin.buffer.read()  # blocks until the parent closes stdin or dies
    os._exit(0)  # no destructor: the process's end stops every server thread at once


if __name__ == "__main__":
    _serve()
