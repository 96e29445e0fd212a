"""`make gpu-check` (benchmarks/gpu_check.py) where there is no GPU: a sentence and exit 3, nothing claimed."""
import os
import shutil
import subprocess
import sys

import pytest

from conftest import REPO


def test_the_check_says_it_checked_nothing_where_tensorflow_sees_no_gpu():
    env = {**os.environ, "CUDA_VISIBLE_DEVICES": "-1"}   # hides any GPU from TensorFlow
    run = subprocess.run([sys.executable, "benchmarks/gpu_check.py"], cwd=REPO, env=env, capture_output=True,
                         text=True, timeout=600)
    assert run.returncode == 3, run.stdout + run.stderr
    assert "sees no GPU" in run.stdout and "nothing checked" in run.stdout
    assert "passed" not in run.stdout and "Traceback" not in run.stderr


@pytest.mark.skipif(shutil.which("make") is None, reason="needs make")
@pytest.mark.skipif(shutil.which("nvidia-smi") is not None, reason="a GPU host: make gpu-check would run for real")
def test_make_gpu_check_stops_before_installing_anything_without_an_nvidia_gpu(tmp_path):
    run = subprocess.run(["make", "gpu-check", f"GPU_VENV={tmp_path / 'venv'}"], cwd=REPO, capture_output=True,
                         text=True, timeout=120)
    assert run.returncode != 0 and "no NVIDIA GPU here" in run.stdout + run.stderr
    assert not (tmp_path / "venv").exists()
