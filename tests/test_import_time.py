"""``import neuronscope`` and ``neuronscope --help`` load no torch, transformers or numpy (behaviour, not
timing): the heavy modules are imported where they are used, and the package facade re-exports lazily."""

from __future__ import annotations

import subprocess
import sys

HEAVY = ("torch", "transformers", "numpy", "safetensors", "tokenizers")


def _python(code: str) -> str:
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, check=True)
    return done.stdout.strip()


def test_importing_the_cli_loads_no_heavy_module():
    code = f"import sys, neuronscope.cli; print(sorted(m for m in {HEAVY!r} if m in sys.modules))"
    assert _python(code) == "[]"


def test_importing_the_package_loads_no_heavy_module():
    code = f"import sys, neuronscope; print(sorted(m for m in {HEAVY!r} if m in sys.modules))"
    assert _python(code) == "[]"


def test_help_imports_no_torch():
    done = subprocess.run([sys.executable, "-X", "importtime", "-m", "neuronscope", "--help"],
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert "usage: neuronscope" in done.stdout
    imported = {line.rsplit("|", 1)[-1].strip() for line in done.stderr.splitlines() if line.startswith("import time:")}
    assert "neuronscope.cli" in imported
    assert not imported & set(HEAVY)


def test_lazy_facade_resolves_every_public_name():
    code = ("import neuronscope, sys\n"
            "assert 'torch' not in sys.modules\n"
            "missing = [n for n in neuronscope.__all__ if getattr(neuronscope, n, None) is None]\n"
            "from neuronscope.store import NeuronStore\n"
            "from neuronscope.mining.run import mine\n"
            "print(missing, neuronscope.NeuronStore is NeuronStore, neuronscope.mine is mine,\n"
            "      set(neuronscope.__all__) <= set(dir(neuronscope)))")
    assert _python(code) == "[] True True True"


def test_unknown_attribute_is_an_attribute_error():
    code = ("import neuronscope\n"
            "try:\n    neuronscope.no_such_name\nexcept AttributeError as e:\n    print(e)")
    assert _python(code) == "module 'neuronscope' has no attribute 'no_such_name'"
