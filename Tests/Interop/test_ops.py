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
    elif argument.type_attr:
        entry["type_attr"] = argument.type_attr
    else:
        entry["type"] = tf.dtypes.as_dtype(argument.type).name
    return entry


def default_of(attr):
    """An OpDef attribute's default as the helper prints it (None when it has none)."""
    if not attr.HasField("default_value"):
        return None
    value = attr.default_value
    kind = value.WhichOneof("value")
    if kind == "type":
        return tf.dtypes.as_dtype(value.type).name
    if kind == "s":
        return value.s.decode()
    if kind == "list":
        return list(value.list.i)
    return {"i": value.i, "f": value.f, "b": value.b}.get(kind, "unsupported")


def registry_schemas():
    return json.loads(subprocess.run([HELPER, "schemas"], capture_output=True, check=True).stdout)


def test_every_schema_matches_tensorflows_op_def():
    """Arguments with their counts and dtypes, and every attribute declared, match TensorFlow;
    every attribute TensorFlow requires (has no default for) is declared, so that planning a
    node without it fails instead of a kernel defaulting silently."""
    schemas = registry_schemas()
    assert len(schemas) >= 140
    for schema in schemas:
        op = schema["op"]
        definition = op_def_registry.get(op)
        assert definition is not None, op
        assert schema["inputs"] == [describe(a) for a in definition.input_arg], op
        assert schema["outputs"] == [describe(a) for a in definition.output_arg], op
        theirs = {a.name: a for a in definition.attr}
        ours = {a["name"]: a for a in schema["attributes"]}
        for name, attribute in ours.items():
            assert name in theirs, (op, name)
            assert attribute["kind"] == theirs[name].type, (op, name)
            expected = default_of(theirs[name])
            if isinstance(expected, float):
                assert attribute["default"] == pytest.approx(expected), (op, name)
            else:
                assert attribute["default"] == expected, (op, name)
        required = {name for name, a in theirs.items() if not a.HasField("default_value")}
        assert required <= set(ours), (op, required - set(ours))


def test_registry_declares_ops_tfmp_converts_but_cannot_run_yet():
    """The precision rules live in the schemas; ops converted but not yet run say so."""
    schemas = {s["op"]: s for s in registry_schemas()}
    for op in ["MatMul", "Conv2D", "Conv3D", "AddN", "GatherV2", "TopKV2", "FusedBatchNormV2"]:
        assert op in schemas, op
    assert schemas["MatMul"]["kernel"] and not schemas["Conv3D"]["kernel"]


def assert_runs_as_tensorflow(module, inputs, tmp_path, tolerance=1e-6):
    """Saves `module`, runs it with tfmp and with TensorFlow, and compares every output: dtype,
    shape, and values (NaN where TensorFlow has NaN)."""
    model = str(tmp_path / "module")
    tf.saved_model.save(module, model)
    ours, theirs = tfmp_run(model, inputs, tmp_path), run_tf2(model, inputs)
    assert sorted(ours) == sorted(theirs)
    for key, reference in theirs.items():
        assert ours[key].dtype == reference.dtype and ours[key].shape == reference.shape, key
        np.testing.assert_allclose(ours[key], reference, rtol=tolerance, atol=tolerance, equal_nan=True,
                                   err_msg=key)


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
    x = np.array([[-3.0, -0.0, 0.0, 0.7, 2.5], [np.nan, 1e-3, -1e4, np.inf, 4.0]], np.float32)
    counts = np.arange(10, dtype=np.int32).reshape(2, 5) - 4
    assert_runs_as_tensorflow(NewOps(), {"x": x, "counts": counts}, tmp_path)


class Float64Math(tf.Module):
    """float64 constants and arithmetic cast back to float32, as some layers hold them."""

    @tf.function(input_signature=[tf.TensorSpec([2, 3], tf.float32)])
    def __call__(self, x):
        scale = tf.constant(np.array([1.5, 2.5, 1e-300]), tf.float64)
        wide = tf.cast(x, tf.float64) * scale + tf.constant(0.25, tf.float64)
        return {"wide": wide, "narrow": tf.cast(wide / tf.constant(3.0, tf.float64), tf.float32)}


def test_float64_constants_and_arithmetic_match_tensorflow(tmp_path):
    inputs = {"x": np.array([[1.0, -2.0, 3.0], [0.1, 1e30, -0.0]], np.float32)}
    assert_runs_as_tensorflow(Float64Math(), inputs, tmp_path, tolerance=0)


class MoreOps(tf.Module):
    """Ops the zoo's models and common tf.function code emit, each in its TensorFlow spelling."""

    @tf.function(input_signature=[tf.TensorSpec([2, 5], tf.float32), tf.TensorSpec([2, 5], tf.bool)])
    def __call__(self, x, flags):
        halves = tf.constant([[0.5, 1.5, 2.5, -0.5, -1.5], [-2.5, 3.5, 0.49, -0.51, 7.0]])
        raw = tf.raw_ops
        return {
            "rounding": tf.floor(x) + 10 * tf.math.ceil(x) + 100 * tf.round(halves),
            "math": tf.math.expm1(x) + raw.Inv(x=x) + tf.nn.softsign(x),
            "classes": tf.cast(tf.math.is_inf(x), tf.int32) + 2 * tf.cast(tf.math.is_nan(x), tf.int32),
            "sum": tf.add_n([x, halves, x * 2.0]),
            "clipped": tf.clip_by_value(halves, -1.0, 2.0),
            "checked": tf.debugging.check_numerics(halves, "halves"),
            "selected": raw.Select(condition=flags, x=x, y=halves)
            + raw.Select(condition=tf.constant([True, False]), x=halves, y=-halves),
            "reversed": tf.reverse(halves, axis=[1]) + raw.Reverse(tensor=halves, dims=[True, True]),
            "biased": raw.BiasAddV1(value=halves, bias=tf.range(5.0)),
            "all": tf.reduce_all(flags, axis=1), "any": tf.reduce_any(flags, axis=0, keepdims=True),
        }


def test_more_ops_match_tensorflow(tmp_path):
    x = np.array([[-3.0, -0.0, 0.0, 0.7, 2.5], [np.nan, 1e-3, -1e4, np.inf, -np.inf]], np.float32)
    flags = np.array([[True, False, True, True, False], [True, True, True, True, True]])
    assert_runs_as_tensorflow(MoreOps(), {"x": x, "flags": flags}, tmp_path)
