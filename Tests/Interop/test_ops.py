"""Interop tests for the runtime's op registry: every schema matches TensorFlow's own OpDef, and
ops added through the registry compute what TensorFlow computes."""
import json
import os
import subprocess

import numpy as np
import pytest
import tensorflow as tf
from tensorflow.python.framework import op_def_registry

from test_interop import TFMP, run_tf2
from test_run import tfmp_run

HELPER = os.environ.get("TFMP_INTEROP_HELPER")


def describe(argument):
    entry = {"name": argument.name}
    if argument.number_attr:
        entry["number_attr"] = argument.number_attr
    if argument.type_list_attr:
        entry["type_list_attr"] = argument.type_list_attr
    return entry


def test_every_schema_matches_tensorflows_op_def():
    schemas = json.loads(subprocess.run([HELPER, "schemas"], capture_output=True, check=True).stdout)
    assert len(schemas) >= 100
    for schema in schemas:
        definition = op_def_registry.get(schema["op"])
        assert definition is not None, schema["op"]
        assert schema["inputs"] == [describe(a) for a in definition.input_arg], schema["op"]
        assert schema["outputs"] == [describe(a) for a in definition.output_arg], schema["op"]


class NewOps(tf.Module):
    """Sin, Cos, Sign, IsFinite, BroadcastTo and Cumsum, as rotary embeddings, position
    embeddings and reduce_logsumexp use them."""

    @tf.function(input_signature=[tf.TensorSpec([2, 5], tf.float32), tf.TensorSpec([2, 5], tf.int32)])
    def __call__(self, x, counts):
        rotary = tf.sin(x) * tf.cos(2.0 * x)
        finite = tf.cast(tf.math.is_finite(tf.math.log(x)), tf.float32)
        positions = tf.broadcast_to(tf.constant([[0.5], [1.5]]), [2, 5]) + tf.broadcast_to(tf.range(5.0), [2, 5])
        return {
            "rotary": rotary,
            "sign": tf.sign(x) * finite,
            "positions": positions,
            "cumsum": tf.math.cumsum(x, axis=1) + tf.math.cumsum(x, axis=0, exclusive=True, reverse=True),
            "integer_cumsum": tf.math.cumsum(counts, axis=-1, reverse=True),
        }


def test_new_ops_match_tensorflow(tmp_path):
    model = str(tmp_path / "new_ops")
    tf.saved_model.save(NewOps(), model)
    x = np.array([[-3.0, -0.0, 0.0, 0.7, 2.5], [np.nan, 1e-3, -1e4, np.inf, 4.0]], np.float32)
    counts = np.arange(10, dtype=np.int32).reshape(2, 5) - 4
    inputs = {"x": x, "counts": counts}
    ours, theirs = tfmp_run(model, inputs, tmp_path), run_tf2(model, inputs)
    assert sorted(ours) == sorted(theirs)
    for key, reference in theirs.items():
        assert ours[key].dtype == reference.dtype and ours[key].shape == reference.shape, key
        np.testing.assert_allclose(ours[key], reference, rtol=1e-6, atol=1e-6, equal_nan=True, err_msg=key)
