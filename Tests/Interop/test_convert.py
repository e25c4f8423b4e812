"""Interop tests for `tfmp convert`: TensorFlow itself loads and runs every converted fixture.

Tolerances are relative to the largest magnitude of each float32 output (max |converted - float32|
<= tol * max(1, max |float32|)). float16 keeps 11 significant bits (unit roundoff u = 2^-11 =
4.9e-4) and bfloat16 8 (u = 2^-8 = 3.9e-3). The largest errors measured on these fixtures are
6.3e-4 for float16 (custom_math's log-softmax) and 4.7e-3 for bfloat16 (sharded's two chained
64x64 products), about 1.3u; the bounds, 5e-3 (about 10u) and 2.5e-2 (about 6u), leave room for
deeper models and stay far below what a wrong conversion gives.
"""
import json
import os
import subprocess

import numpy as np
import pytest
import tensorflow as tf
from tensorflow.python.saved_model import loader_impl

from test_interop import FIXTURES, NAMES, TFMP, run_tf1, run_tf2, sample

TOLERANCE = {"mixed_float16": 5e-3, "mixed_bfloat16": 2.5e-2}
REDUCED = {"mixed_float16": tf.float16.as_datatype_enum, "mixed_bfloat16": tf.bfloat16.as_datatype_enum}
TENSOR_CORE_OPS = {"MatMul", "Conv2D", "Einsum", "BatchMatMulV2", "DepthwiseConv2dNative"}
CASES = [(name, policy, weights) for name in NAMES for policy in TOLERANCE for weights in ("auto", "float32")]


@pytest.fixture(scope="module")
def converted(tmp_path_factory):
    folder = tmp_path_factory.mktemp("converted")
    paths = {}
    for name, policy, weights in CASES:
        out = str(folder / f"{name}-{policy}-{weights}")
        result = subprocess.run([TFMP, "convert", "--policy", policy, "--weights", weights,
                                 "--report", out + ".json", os.path.join(FIXTURES, name), out],
                                capture_output=True, text=True)
        assert result.returncode == 0, result.stderr
        paths[(name, policy, weights)] = out
    return paths


@pytest.mark.parametrize("name,policy,weights", CASES)
def test_converted_model_runs_in_both_loaders_within_tolerance(converted, name, policy, weights):
    inputs, recorded = sample(name, "inputs"), sample(name, "outputs")
    for loader in (run_tf2, run_tf1):
        outputs = loader(converted[(name, policy, weights)], inputs)
        assert sorted(outputs) == sorted(recorded)
        for key, reference in recorded.items():
            value = outputs[key]
            assert value.dtype == reference.dtype, (loader.__name__, key)
            assert np.all(np.isfinite(value)), (loader.__name__, key)
            error = np.max(np.abs(value.astype(np.float64) - reference)) if value.size else 0.0
            scale = max(1.0, float(np.max(np.abs(reference)))) if reference.size else 1.0
            assert error <= TOLERANCE[policy] * scale, f"{loader.__name__} {key}: {error} (scale {scale})"


@pytest.mark.parametrize("name,policy,weights", CASES)
def test_signatures_are_kept_and_tensor_core_ops_are_reduced(converted, name, policy, weights):
    original = loader_impl.parse_saved_model(os.path.join(FIXTURES, name)).meta_graphs[0]
    result = loader_impl.parse_saved_model(converted[(name, policy, weights)]).meta_graphs[0]
    assert sorted(result.signature_def) == sorted(original.signature_def)
    for key, signature in original.signature_def.items():
        for kind in ("inputs", "outputs"):
            ours = getattr(result.signature_def[key], kind)
            for tensor, info in getattr(signature, kind).items():
                assert ours[tensor].dtype == info.dtype, (key, kind, tensor)
    heavy = [node for function in result.graph_def.library.function for node in function.node_def
             if node.op in TENSOR_CORE_OPS]
    assert heavy, "every fixture has matrix products or convolutions"
    for node in heavy:
        assert node.attr["T"].type == REDUCED[policy], f"{node.op} {node.name} is not reduced"


@pytest.mark.parametrize("name,policy,weights", [c for c in CASES if c[2] == "auto"])
def test_weights_auto_stores_variables_as_reported_and_tensorflow_reads_them(converted, name, policy, weights):
    out = converted[(name, policy, weights)]
    report = json.load(open(out + ".json"))
    dtypes = tf.train.load_checkpoint(os.path.join(out, "variables", "variables")).get_variable_to_dtype_map()
    assert report["variables"], "every fixture has variables"
    for variable in report["variables"]:
        for key in variable["checkpointKeys"]:
            assert dtypes[key].name == variable["dtype"], (key, variable["reason"])
    loaded = tf.saved_model.load(out)
    stored = {v.dtype.name for v in (loaded.variables if hasattr(loaded, "variables") else [])}
    assert not stored or stored <= {"float32", policy.split("_")[1], "int64"}


@pytest.mark.parametrize("name", ["mlp", "cnn_bn", "two_io", "sharded"])
def test_weights_auto_halves_dense_and_conv_checkpoints(converted, name):
    def data_bytes(path):
        folder = os.path.join(path, "variables")
        return sum(os.path.getsize(os.path.join(folder, f)) for f in os.listdir(folder) if ".data-" in f)
    original = data_bytes(os.path.join(FIXTURES, name))
    ratio = data_bytes(converted[(name, "mixed_float16", "auto")]) / original
    # The object graph string and any float32 batch-norm statistics keep it a little above half.
    assert ratio <= 0.66, f"{name}: {ratio:.2f} of the original"


def test_converting_twice_is_refused(converted, tmp_path):
    once = converted[("mlp", "mixed_float16", "float32")]
    result = subprocess.run([TFMP, "convert", once, str(tmp_path / "twice")], capture_output=True, text=True)
    assert result.returncode == 65
    assert "already computes in float16" in result.stderr
    assert not os.path.exists(tmp_path / "twice")


@pytest.mark.parametrize("policy", sorted(TOLERANCE))
@pytest.mark.parametrize("name", NAMES)
def test_no_keep_io_types_gives_reduced_inputs_and_outputs(name, policy, tmp_path):
    out = str(tmp_path / "io")
    result = subprocess.run([TFMP, "convert", "--no-keep-io-types", "--policy", policy,
                             os.path.join(FIXTURES, name), out], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    reduced = tf.as_dtype(REDUCED[policy])
    original = loader_impl.parse_saved_model(os.path.join(FIXTURES, name)).meta_graphs[0]
    converted = loader_impl.parse_saved_model(out).meta_graphs[0]
    for key, signature in original.signature_def.items():
        for kind in ("inputs", "outputs"):
            for tensor, info in getattr(signature, kind).items():
                expected = reduced.as_datatype_enum if info.dtype == tf.float32.as_datatype_enum else info.dtype
                assert getattr(converted.signature_def[key], kind)[tensor].dtype == expected, (key, tensor)
    inputs = {k: v.astype(reduced.as_numpy_dtype) if v.dtype == np.float32 else v
              for k, v in sample(name, "inputs").items()}
    recorded = sample(name, "outputs")
    for loader in (run_tf2, run_tf1):
        outputs = loader(out, inputs)
        for key, reference in recorded.items():
            value = outputs[key]
            assert value.dtype == (reduced.as_numpy_dtype if reference.dtype == np.float32 else reference.dtype)
            value = value.astype(np.float64)
            assert np.all(np.isfinite(value)), (loader.__name__, key)
            scale = max(1.0, float(np.max(np.abs(reference)))) if reference.size else 1.0
            error = np.max(np.abs(value - reference)) if value.size else 0.0
            assert error <= TOLERANCE[policy] * scale, f"{loader.__name__} {key}: {error}"


def test_embedding_read_by_a_float32_lookup_is_stored_reduced_and_cast_after_the_gather(tmp_path):
    # Keeping the flatten after the lookup float32 leaves the gather float32; the table is still
    # stored in float16, the gather runs on it, and only the gathered rows are cast.
    out = str(tmp_path / "gather")
    result = subprocess.run([TFMP, "convert", "--fp32-node", "flatten", "--report", out + ".json",
                             os.path.join(FIXTURES, "two_io"), out], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    variables = {v["name"]: v for v in json.load(open(out + ".json"))["variables"]}
    assert variables["embedding/embeddings"]["dtype"] == "float16"
    graph = loader_impl.parse_saved_model(out).meta_graphs[0].graph_def
    gathers = [(f, n) for f in graph.library.function for n in f.node_def if n.op == "GatherV2"]
    assert gathers and all(n.attr["Tparams"].type == tf.float16.as_datatype_enum for _, n in gathers)
    for function, gather in gathers:
        readers = [n for n in function.node_def if any(i.startswith(gather.name + ":") for i in n.input)]
        assert readers and all(n.op == "Cast" for n in readers)
    inputs, recorded = sample("two_io", "inputs"), sample("two_io", "outputs")
    for loader in (run_tf2, run_tf1):
        outputs = loader(out, inputs)
        for key, reference in recorded.items():
            assert np.max(np.abs(outputs[key] - reference)) <= TOLERANCE["mixed_float16"] * max(1.0, np.abs(reference).max())
