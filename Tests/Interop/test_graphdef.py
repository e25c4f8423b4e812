"""Interop tests for bare GraphDef files: a frozen graph TensorFlow wrote goes through a GraphIR
module and back unchanged, and TensorFlow imports and runs what tfmp wrote."""
import os
import subprocess

import numpy as np
import pytest
import tensorflow as tf
from tensorflow.python.framework.convert_to_constants import convert_variables_to_constants_v2

from test_interop import FIXTURES, sample

HELPER = os.environ.get("TFMP_INTEROP_HELPER")


@pytest.mark.parametrize("name", ["mlp", "cnn_bn", "attention"])
def test_frozen_graph_round_trips_and_runs(tmp_path, name):
    loaded = tf.saved_model.load(os.path.join(FIXTURES, name))  # keeps the variables alive
    frozen = convert_variables_to_constants_v2(loaded.signatures["serving_default"])
    graph = frozen.graph.as_graph_def()
    original = str(tmp_path / "frozen.pb")
    with open(original, "wb") as file:
        file.write(graph.SerializeToString())
    written = str(tmp_path / "written.pb")
    subprocess.run([HELPER, "graphdef-roundtrip", original, written], check=True)
    with open(written, "rb") as file:
        reread = tf.compat.v1.GraphDef.FromString(file.read())
    assert reread == graph
    inputs = sample(name, "inputs")
    feeds = {t.name: inputs[t.name.split(":")[0]] for t in frozen.inputs}
    fetches = [t.name for t in frozen.outputs]

    def run(definition):
        with tf.Graph().as_default() as imported:
            tf.graph_util.import_graph_def(definition, name="")
            with tf.compat.v1.Session(graph=imported) as session:
                return session.run(fetches, feeds)

    for ours, theirs in zip(run(reread), run(graph)):
        np.testing.assert_array_equal(ours, theirs)
