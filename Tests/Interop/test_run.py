"""Interop tests for `tfmp run`: its float32 outputs match TensorFlow's on the same model and inputs.

Tolerance: 1e-5 of the output's largest magnitude (float32 with a different summation order than
TensorFlow's kernels: a few ulps of the largest values).
"""
import os
import subprocess

import numpy as np
import tensorflow as tf

from test_interop import FIXTURES, NAMES, ROOT, TFMP, run_tf2, sample


def tfmp_run(model, inputs, tmp_path):
    arguments = []
    for name, value in inputs.items():
        path = str(tmp_path / f"{name}.npy")
        np.save(path, value)
        arguments += ["--input", f"{name}={path}"]
    out = str(tmp_path / "out.npz")
    result = subprocess.run([TFMP, "run", model, *arguments, "--output", out], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    with np.load(out) as arrays:
        return {k: arrays[k] for k in arrays.files}


def test_run_matches_tensorflow_on_the_example_model(tmp_path):
    model = os.path.join(ROOT, "Examples", "digits")
    inputs = {"image": np.load(os.path.join(ROOT, "Examples", "digits-sample.npy"))}
    ours, theirs = tfmp_run(model, inputs, tmp_path), run_tf2(model, inputs)
    for key, reference in theirs.items():
        assert ours[key].dtype == reference.dtype and ours[key].shape == reference.shape
        assert np.max(np.abs(ours[key] - reference)) <= 1e-5 * max(1.0, np.abs(reference).max())
    labels = np.load(os.path.join(ROOT, "Examples", "digits-sample-labels.npy"))
    assert (ours["output_0"].argmax(-1) == labels).mean() >= 0.75


def test_run_matches_tensorflow_on_fixtures(tmp_path):
    for name in NAMES:
        inputs = sample(name, "inputs")
        ours, theirs = tfmp_run(os.path.join(FIXTURES, name), inputs, tmp_path), run_tf2(os.path.join(FIXTURES, name), inputs)
        for key, reference in theirs.items():
            assert np.max(np.abs(ours[key] - reference)) <= 1e-5 * max(1.0, np.abs(reference).max()), (name, key)


CONVERTED_TOLERANCE = {"mixed_float16": 5e-3, "mixed_bfloat16": 2.5e-2}


def test_run_matches_tensorflow_on_converted_models(tmp_path):
    """tfmp's float16/bfloat16 execution (rounded inputs and results, float32 accumulation)
    against TensorFlow running the same converted model; bounds as in test_convert.py."""
    worst = {}
    for policy, tolerance in CONVERTED_TOLERANCE.items():
        for name in NAMES:
            model = str(tmp_path / f"{name}-{policy}")
            result = subprocess.run([TFMP, "convert", "--policy", policy, os.path.join(FIXTURES, name), model],
                                    capture_output=True, text=True)
            assert result.returncode == 0, result.stderr
            inputs = sample(name, "inputs")
            ours, theirs = tfmp_run(model, inputs, tmp_path), run_tf2(model, inputs)
            for key, reference in theirs.items():
                reference = reference.astype(np.float64)
                error = np.max(np.abs(ours[key] - reference)) / max(1.0, np.abs(reference).max())
                worst[policy] = max(worst.get(policy, 0), error)
                assert error <= tolerance, (policy, name, key, error)
    print("worst relative differences from TensorFlow:", worst)
