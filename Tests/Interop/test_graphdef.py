"""Interop tests for bare GraphDef files: a frozen graph TensorFlow wrote goes through a GraphIR
module and back unchanged; its conversion is a frozen graph that TensorFlow imports, feeds and
fetches by the original names; `tfmp run` and `validate` run frozen graphs as TensorFlow does."""
import os
import subprocess
import sys

import numpy as np
import pytest
import tensorflow as tf
from tensorflow.python.framework.convert_to_constants import convert_variables_to_constants_v2

from test_interop import FIXTURES, HELPER, ROOT, sample, tfmp

sys.path.insert(0, os.path.join(ROOT, "Scripts"))
import zoo  # noqa: E402



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


def tf1_control_flow(path):
    """A TF1 graph with dataflow control flow, frozen by TF1: a loop holding an inner loop and a
    conditional, then a conditional one of whose branches is a constant; returns feeds, fetches."""
    tf1 = tf.compat.v1

    def build():
        x = tf1.placeholder(tf.float32, [None, 6], name="x")
        w = tf1.get_variable("w", shape=[6, 6], initializer=tf1.random_normal_initializer(seed=1))

        def outer(i, h):
            def inner(j, s):
                return j + 1, tf.tanh(tf.matmul(s, w)) * 0.5 + s * 0.5
            _, h = tf1.while_loop(lambda j, s: j < 3, inner, [tf.constant(0), h])
            h = tf1.cond(tf.reduce_sum(h) > 0.0, lambda: h * 2.0, lambda: h - 1.0)
            return i + 1, h
        _, h = tf1.while_loop(lambda i, h: i < 4, outer, [tf.constant(0), x])
        y = tf1.cond(tf.reduce_mean(x) > 0.0, lambda: tf.constant(1.5), lambda: tf.reduce_max(h))
        tf.identity(h * y, name="out")
    frozen = zoo.freeze_tf1(build, ["out"], dataflow_control_flow=True)
    assert {"Enter", "Switch", "Merge", "LoopCond"} <= {node.op for node in frozen.node}
    with open(path, "wb") as file:
        file.write(frozen.SerializeToString())
    return ["x:0"], ["out:0"]


def tf2_control_flow(path):
    """A tf.function with a while loop and a conditional over a variable, frozen by TF2 (which
    lowers both to dataflow control flow); returns feeds and fetches."""
    weights = tf.Variable(tf.random.stateless_normal([6, 6], seed=[3, 4]) * 0.4)

    @tf.function(input_signature=[tf.TensorSpec([None, 6], tf.float32, name="x")])
    def step(x):
        def body(i, h):
            h = tf.cond(tf.reduce_max(h) > 1.0, lambda: tf.nn.relu(h @ weights) - 0.5,
                        lambda: tf.sigmoid(h @ weights) * 2.0)
            return i + 1, h
        _, h = tf.while_loop(lambda i, h: i < 5, body, [tf.constant(0), x])
        return {"out": h}
    frozen = convert_variables_to_constants_v2(step.get_concrete_function())
    definition = frozen.graph.as_graph_def()
    assert {"Enter", "Switch", "Merge", "LoopCond"} <= {node.op for node in definition.node}
    with open(path, "wb") as file:
        file.write(definition.SerializeToString())
    return [t.name for t in frozen.inputs], [t.name for t in frozen.outputs]


CONTROL_FLOW = {"lstm": lambda path: freeze_fixture("lstm", path), "tf1_control_flow": tf1_control_flow,
                "tf2_control_flow": tf2_control_flow}


@pytest.mark.parametrize("name", sorted(CONTROL_FLOW))
def test_frozen_loops_and_conditionals_run_convert_and_verify(tmp_path, name):
    """TF1 dataflow loops (a Keras LSTM's While frozen by TF2, nested TF1 while_loops) and
    conditionals (TF1 conds, a lowered tf.cond): `tfmp run` matches a TensorFlow Session, and
    `convert` verifies its conversion, which TensorFlow runs close to the original."""
    original = str(tmp_path / f"{name}.pb")
    inputs, fetches = CONTROL_FLOW[name](original)
    rng = np.random.default_rng(5)
    if name == "lstm":
        batches = [sample("lstm", "inputs")["sequence"]]
    else:
        # Batches that take each branch of the conditionals.
        batches = [rng.standard_normal((3, 6)).astype(np.float32) + shift for shift in (-0.5, 0.5)]
    key = inputs[0].split(":")[0]
    for policy in ["mixed_float16", "mixed_bfloat16"]:
        converted = str(tmp_path / f"{name}.{policy}.pb")
        result = tfmp("convert", original, converted, "--policy", policy)
        assert result.returncode == 0, result.stderr
        assert "verified serving_default" in result.stdout, result.stdout
        for index, batch in enumerate(batches):
            np.save(str(tmp_path / "input.npy"), batch)
            expected, = session_run(original, {inputs[0]: batch}, fetches)
            served, = session_run(converted, {inputs[0]: batch}, fetches)
            scale = max(1.0, float(np.max(np.abs(expected))))
            assert served.dtype == np.float32
            tolerance = 5e-2 if policy == "mixed_float16" else 1e-1
            assert np.max(np.abs(served - expected)) <= tolerance * scale
            for model, reference, bound in [(original, expected, 1e-5), (converted, served, 5e-2)]:
                out = str(tmp_path / "out.npz")
                run = tfmp("run", model, "--input", f"{key}={tmp_path / 'input.npy'}", "--output", out)
                assert run.returncode == 0, run.stderr
                with np.load(out) as ours:
                    value = ours[fetches[0].split(":")[0]]
                assert np.max(np.abs(value - reference)) <= bound * scale, (model, index)
        validate = tfmp("validate", original, converted, "--rtol", "0.1", "--atol", "0.1")
        assert validate.returncode == 0, validate.stdout + validate.stderr


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
