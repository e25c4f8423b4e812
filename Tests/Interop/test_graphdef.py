"""Interop tests for bare GraphDef files: a frozen graph TensorFlow wrote goes through a GraphIR
module and back unchanged; its conversion is a frozen graph that TensorFlow imports, feeds and
fetches by the original names; `tfmp run` and `validate` run frozen graphs as TensorFlow does."""
import os
import subprocess

import numpy as np
import pytest
import tensorflow as tf
from tensorflow.python.framework.convert_to_constants import convert_variables_to_constants_v2

from test_interop import FIXTURES, sample, tfmp

HELPER = os.environ.get("TFMP_INTEROP_HELPER")


@pytest.mark.parametrize("name", ["mlp", "cnn_bn", "attention"])
def test_frozen_graph_round_trips_and_runs(tmp_path, name):
    original, written = str(tmp_path / "frozen.pb"), str(tmp_path / "written.pb")
    inputs, fetches = freeze_fixture(name, original)
    subprocess.run([HELPER, "graphdef-roundtrip", original, written], check=True)
    with open(original, "rb") as first, open(written, "rb") as second:
        assert tf.compat.v1.GraphDef.FromString(second.read()) == tf.compat.v1.GraphDef.FromString(first.read())
    given = sample(name, "inputs")
    feeds = {t: given[t.split(":")[0]] for t in inputs}
    for ours, theirs in zip(session_run(written, feeds, fetches), session_run(original, feeds, fetches)):
        np.testing.assert_array_equal(ours, theirs)

def freeze_fixture(name, path):
    """The fixture's serving signature frozen as TF2 freezes one; returns its feeds and fetches."""
    loaded = tf.saved_model.load(os.path.join(FIXTURES, name))
    frozen = convert_variables_to_constants_v2(loaded.signatures["serving_default"])
    with open(path, "wb") as file:
        file.write(frozen.graph.as_graph_def().SerializeToString())
    return [t.name for t in frozen.inputs], [t.name for t in frozen.outputs]


def session_run(path, feeds, fetches):
    with open(path, "rb") as file:
        definition = tf.compat.v1.GraphDef.FromString(file.read())
    with tf.Graph().as_default() as imported:
        tf.graph_util.import_graph_def(definition, name="")
        with tf.compat.v1.Session(graph=imported) as session:
            return session.run(fetches, feeds)


def test_frozen_loop_converts_and_the_runtime_says_why_it_cannot_run_it(tmp_path):
    """Freezing an LSTM lowers its While to TF1 dataflow control flow (Enter, Switch, Merge, ...),
    which tfmp converts but its runtime does not run: the conversion is written unverified, says
    why, and TensorFlow runs it; `tfmp run` refuses with the same reason."""
    original, converted = str(tmp_path / "lstm.pb"), str(tmp_path / "lstm.float16.pb")
    inputs, fetches = freeze_fixture("lstm", original)
    result = tfmp("convert", original, converted)
    assert result.returncode == 0, result.stderr
    assert "not verified" in result.stdout and "TF1 dataflow control flow" in result.stdout, result.stdout
    feeds = {inputs[0]: sample("lstm", "inputs")["sequence"]}
    expected, = session_run(original, feeds, fetches)
    actual, = session_run(converted, feeds, fetches)
    assert actual.dtype == np.float32
    assert np.max(np.abs(actual - expected)) <= 5e-2 * max(1.0, np.max(np.abs(expected)))
    np.save(str(tmp_path / "sequence.npy"), feeds[inputs[0]])
    run = tfmp("run", original, "--input", f"sequence={tmp_path / 'sequence.npy'}")
    assert run.returncode != 0 and "TF1 dataflow control flow" in run.stderr, run.stderr


def test_frozen_graph_refuses_what_it_cannot_honour(tmp_path):
    original = str(tmp_path / "mlp.pb")
    freeze_fixture("mlp", original)
    for flag, why in [("--weights=float32", "no variables"), ("--no-keep-io-types", "keep their float32 types")]:
        result = tfmp("convert", original, str(tmp_path / "out.pb"), flag)
        assert result.returncode != 0 and why in result.stderr, result.stderr
        assert not os.path.exists(tmp_path / "out.pb")


@pytest.mark.parametrize("name", ["cnn_bn", "attention", "custom_math", "depthwise"])
@pytest.mark.parametrize("policy", ["mixed_float16", "mixed_bfloat16"])
def test_frozen_fixture_converts_runs_and_validates(tmp_path, name, policy):
    """A frozen fixture's conversion: TensorFlow feeds and fetches it by the original names and
    gets float32 outputs near the original's; tfmp runs both as TensorFlow does, and validates."""
    original, converted = str(tmp_path / "frozen.pb"), str(tmp_path / "converted.pb")
    inputs, fetches = freeze_fixture(name, original)
    result = tfmp("convert", original, converted, "--policy", policy)
    assert result.returncode == 0, result.stderr
    assert "verified serving_default" in result.stdout, result.stdout
    given = sample(name, "inputs")
    feeds = {t: given[t.split(":")[0]] for t in inputs}
    expected = session_run(original, feeds, fetches)
    actual = session_run(converted, feeds, fetches)
    tolerance = 5e-2 if policy == "mixed_float16" else 1e-1
    for value, reference in zip(actual, expected):
        assert value.dtype == reference.dtype
        assert np.max(np.abs(value - reference)) <= tolerance * max(1.0, np.max(np.abs(reference)))
    arguments = []
    for key, value in given.items():
        np.save(str(tmp_path / f"{key}.npy"), value)
        arguments += ["--input", f"{key}={tmp_path / (key + '.npy')}"]
    for model, reference in [(original, expected), (converted, actual)]:
        out = str(tmp_path / "out.npz")
        run = tfmp("run", model, *arguments, "--output", out)
        assert run.returncode == 0, run.stderr
        with np.load(out) as ours:
            assert sorted(ours.files) == sorted(f.split(":")[0] for f in fetches)
            for fetch, theirs in zip(fetches, reference):
                value = ours[fetch.split(":")[0]]
                assert np.max(np.abs(value - theirs)) <= 5e-2 * max(1.0, np.max(np.abs(theirs)))
    validate = tfmp("validate", original, converted, "--rtol", "0.1", "--atol", "0.1")
    assert validate.returncode == 0, validate.stdout + validate.stderr
