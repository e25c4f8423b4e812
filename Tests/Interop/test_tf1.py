"""Interop tests for TF1-style SavedModels (placeholders, tf.compat.v1 variables, a Session and
the TF1 Saver): tfmp finds every variable's checkpoint entry and runs the model as TensorFlow's
TF1 loader does."""
import os
import subprocess

import numpy as np
import pytest
import tensorflow as tf

from test_interop import TFMP, run_tf1, run_tf2
from test_run import tfmp_run


def make_tf1_model(path):
    """A three-layer perceptron with reference variables (VariableV2) and a resource variable,
    ending in a softmax."""
    graph = tf.Graph()
    with graph.as_default():
        x = tf.compat.v1.placeholder(tf.float32, [None, 4], name="x")
        w1 = tf.compat.v1.get_variable(
            "w1", [4, 8], initializer=tf.compat.v1.random_normal_initializer(seed=1), use_resource=False)
        w2 = tf.compat.v1.get_variable(
            "w2", [8, 8], initializer=tf.compat.v1.random_normal_initializer(seed=2), use_resource=True)
        b2 = tf.compat.v1.get_variable("b2", [8], initializer=tf.compat.v1.constant_initializer(0.5),
                                       use_resource=False)
        w3 = tf.compat.v1.get_variable(
            "w3", [8, 3], initializer=tf.compat.v1.random_normal_initializer(seed=6), use_resource=False)
        hidden = tf.nn.relu(tf.matmul(tf.nn.relu(tf.matmul(x, w1)), w2) + b2)
        y = tf.nn.softmax(tf.matmul(hidden, w3), name="y")
        save_session_model(graph, path, x, y)


def save_session_model(graph, path, x, y):
    """Initializes the variables of `graph` in a Session and saves it with the TF1 builder, its
    serving signature x -> y."""
    with tf.compat.v1.Session(graph=graph) as session:
        session.run(tf.compat.v1.global_variables_initializer())
        builder = tf.compat.v1.saved_model.Builder(path)
        signature = tf.compat.v1.saved_model.predict_signature_def({"x": x}, {"y": y})
        builder.add_meta_graph_and_variables(session, ["serve"], signature_def_map={"serving_default": signature})
        builder.save()


def test_tf1_saved_model_runs_as_tensorflow_runs_it(tmp_path):
    model = str(tmp_path / "tf1")
    make_tf1_model(model)
    inputs = {"x": np.random.default_rng(3).standard_normal((5, 4)).astype(np.float32)}
    ours, theirs = tfmp_run(model, inputs, tmp_path), run_tf1(model, inputs)
    assert sorted(ours) == sorted(theirs)
    for key, reference in theirs.items():
        assert ours[key].dtype == reference.dtype and ours[key].shape == reference.shape
        assert np.max(np.abs(ours[key] - reference)) <= 1e-5 * max(1.0, np.abs(reference).max())


@pytest.mark.parametrize("policy", ["float16", "bfloat16"])
@pytest.mark.parametrize("weights", ["auto", "float32"])
def test_converted_tf1_saved_model_loads_in_both_loaders(tmp_path, policy, weights):
    """The TF1 initializers write float32 values: into a variable stored in the reduced type they
    go through a cast, and the model gains no object graph (else the TF2 loader takes it for a
    TF2 model). Regression: "Input 1 of node w1/Assign was passed float ... expected half"."""
    model, output = str(tmp_path / "tf1"), str(tmp_path / "converted")
    make_tf1_model(model)
    result = subprocess.run([TFMP, "convert", model, output, "--policy", f"mixed_{policy}", "--weights", weights],
                            capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    inputs = {"x": np.random.default_rng(4).standard_normal((5, 4)).astype(np.float32)}
    reference = run_tf1(model, inputs)["y"]
    for loaded in (run_tf1(output, inputs)["y"], run_tf2(output, inputs)["y"]):
        assert loaded.dtype == np.float32 and np.all(np.isfinite(loaded))
        assert np.max(np.abs(loaded - reference)) <= 2e-2
    stored = tf.train.load_checkpoint(os.path.join(output, "variables", "variables")).get_variable_to_dtype_map()
    # The hidden layers' variables are read only by reduced-precision compute, so under --weights
    # auto they are stored reduced: the reference variables (VariableV2, with their Assign
    # initializers and the Saver's restore Assign) and the resource one. The output layer, with
    # its softmax, stays float32 and so does its weight.
    for key in ("w1", "w2", "b2"):
        assert stored[key] == (tf.dtypes.as_dtype(policy) if weights == "auto" else tf.float32), key
    assert stored["w3"] == tf.float32
    graph = tf.Graph()
    with tf.compat.v1.Session(graph=graph) as session:
        tf.compat.v1.saved_model.loader.load(session, ["serve"], output)
        assert any(op.type == "MatMul" and op.get_attr("T") == tf.dtypes.as_dtype(policy)
                   for op in graph.get_operations())


def test_reference_variable_beyond_float16_keeps_its_readers_float32(tmp_path):
    """A VariableV2 holding 7e4 (beyond float16) read through its Identity by a MatMul: the
    variable stays float32 and so does the MatMul, and the conversion verifies and serves finite
    values. Regression: the MatMul converted, so the output was inf."""
    model, output = str(tmp_path / "tf1"), str(tmp_path / "converted")
    graph = tf.Graph()
    with graph.as_default():
        x = tf.compat.v1.placeholder(tf.float32, [None, 4], name="x")
        big = tf.compat.v1.get_variable("big", [4, 8], initializer=tf.compat.v1.constant_initializer(7e4),
                                        use_resource=False)
        w = tf.compat.v1.get_variable("w", [8, 3], initializer=tf.compat.v1.random_normal_initializer(seed=5),
                                      use_resource=False)
        y = tf.identity(tf.matmul(tf.matmul(x, big) * 1e-5, w), name="y")
        save_session_model(graph, model, x, y)
    result = subprocess.run([TFMP, "convert", model, output], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    assert "verified serving_default" in result.stdout
    inputs = {"x": np.random.default_rng(6).standard_normal((5, 4)).astype(np.float32)}
    reference = run_tf1(model, inputs)["y"]
    converted = run_tf1(output, inputs)["y"]
    assert np.all(np.isfinite(converted))
    assert np.max(np.abs(converted - reference)) <= 5e-2 * max(1.0, np.abs(reference).max())
    stored = tf.train.load_checkpoint(os.path.join(output, "variables", "variables")).get_variable_to_dtype_map()
    assert stored["big"] == tf.float32 and stored["w"] == tf.float16
