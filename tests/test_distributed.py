"""`torchrun --nproc_per_node 2 -m neuronscope mine` (gloo on CPU) equals one uninterrupted process."""

from __future__ import annotations

import os
import subprocess
import sys

from neuronscope import MiningConfig, mine, open_store


def test_two_process_gloo_equals_single_process(tmp_path, minilm):
    args = ["--corpus", "pydoc", "--max-tokens", "5000", "--seq-len", "128", "--batch-tokens", "1024",
            "--layers", "0,5", "--k", "8", "--bottom-k", "2", "--samples", "2", "--quiet"]
    env = {**os.environ, "OMP_NUM_THREADS": "1", "TOKENIZERS_PARALLELISM": "false"}
    cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2", "--master_port", "29531",
           "-m", "neuronscope", "mine", *args, "--out", str(tmp_path / "dist")]
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    dist = open_store(tmp_path / "dist")
    single = mine(minilm, "pydoc", tmp_path / "single", max_tokens=5000, seq_len=128, batch_tokens=1024,
                  layers=[0, 5], config=MiningConfig(k=8, bottom_k=2, samples_per_stratum=2), progress=False)
    assert dist.manifest["merged_from"] == 2
    assert not (tmp_path / "dist" / "ranks").exists()
    assert dist.n_tokens_seen == single.n_tokens_seen == 5000
    assert dist.manifest["sequences"] == single.manifest["sequences"]
    for layer in (0, 5):
        assert dist.stats(layer).equal(single.stats(layer), moments_rtol=1e-9)
