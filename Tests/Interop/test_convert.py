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
    report = json.load(open(converted[(name, policy, weights)] + ".json"))
    output_layer = {n["name"] for n in report["nodes"] if n["reason"].startswith("output layer of a softmax")}
    for node in heavy:
        if node.name in output_layer:
            # Only the layer computing an output softmax's input stays float32, as Keras keeps it.
            assert node.attr["T"].type == tf.float32.as_datatype_enum, node.name
        else:
            assert node.attr["T"].type == REDUCED[policy], f"{node.op} {node.name} is not reduced"
    assert len(output_layer & {node.name for node in heavy}) <= len(original.signature_def["serving_default"].outputs)


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
    out = converted[(name, "mixed_float16", "auto")]
    report = json.load(open(out + ".json"))
    float32_readers = {n["name"] for n in report["nodes"] if n["reason"].startswith("output layer of a softmax")
                       or n["reason"].startswith("normalization")}
    # Every variable is stored in float16 but those read by an output softmax's layer (its
    # matrix product and bias stay float32) and by normalizations.
    for variable in report["variables"]:
        if variable["dtype"] == "float32":
            assert "read in float32 by" in variable["reason"], variable
            assert variable["reason"].split("'")[1] in float32_readers, variable
    dtypes = tf.train.load_checkpoint(os.path.join(out, "variables", "variables")).get_variable_to_dtype_map()
    reader = tf.train.load_checkpoint(os.path.join(out, "variables", "variables"))
    sizes = {"float16": 0, "float32": 0}
    for key, dtype in dtypes.items():
        if dtype.name in sizes:
            sizes[dtype.name] += reader.get_tensor(key).nbytes
    # The float32 variables aside, half the bytes are left, and the object graph string, which
    # keeps it a little above half on these small models.
    ratio = (data_bytes(out) - sizes["float32"]) / (data_bytes(os.path.join(FIXTURES, name)) - sizes["float32"])
    assert ratio <= 0.66, f"{name}: {ratio:.2f} of the original, the float32 variables aside"


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


class OutOfRange(tf.Module):
    """Variables beyond float16's range, read by an infer op (Mul) and by an allow op (MatMul),
    and a constant beyond it read by a MatMul. Regression: the variables were kept float32 "for
    range" while their readers computed in float16, so the model served inf and NaN."""

    def __init__(self):
        self.w = tf.Variable(tf.random.stateless_normal([8, 8], seed=[1, 2]))
        self.huge = tf.Variable(tf.fill([8], 7.0e4))
        self.tiny = tf.Variable(tf.fill([8], 1.0e-9))
        self.wide = tf.Variable(tf.random.stateless_normal([8, 4], seed=[3, 4]) * 1.0e5)

    @tf.function(input_signature=[tf.TensorSpec([3, 8], tf.float32)])
    def __call__(self, x):
        h = tf.matmul(x, self.w)
        scaled = (h * self.huge) * self.tiny
        constant = tf.constant(np.full([8, 2], 9.0e4, np.float32))
        return {"scaled": scaled, "wide": tf.matmul(h, self.wide) * 1e-5, "constant": tf.matmul(h, constant) * 1e-5}


@pytest.mark.parametrize("weights", ["auto", "float32"])
def test_values_beyond_float16_keep_their_readers_float32(tmp_path, weights):
    model, output = str(tmp_path / "range"), str(tmp_path / "converted")
    tf.saved_model.save(OutOfRange(), model)
    result = subprocess.run([TFMP, "convert", "--weights", weights, model, output], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    assert "reads a variable that does not fit" in result.stdout
    inputs = {"x": np.random.default_rng(5).standard_normal((3, 8)).astype(np.float32)}
    reference = run_tf2(model, inputs)
    for loaded in (run_tf2(output, inputs), run_tf1(output, inputs)):
        for key, expected in reference.items():
            assert np.all(np.isfinite(loaded[key])), key
            assert np.max(np.abs(loaded[key] - expected)) <= 5e-3 * max(1.0, np.abs(expected).max()), key
    # The MatMul reading only the in-range weight still computes in float16.
    graph = loader_impl.parse_saved_model(output).meta_graphs[0].graph_def
    products = [n for f in graph.library.function for n in f.node_def if n.op == "MatMul"]
    assert sorted(n.attr["T"].type for n in products) == sorted(
        [tf.float16.as_datatype_enum, tf.float32.as_datatype_enum, tf.float32.as_datatype_enum])


class OverflowingProduct(tf.Module):
    """Every weight fits float16, but the product overflows it on ordinary inputs: no list-based
    choice keeps it finite; verification must refuse it."""

    def __init__(self):
        self.w = tf.Variable(tf.random.stateless_normal([64, 16], seed=[5, 6]) * 8000.0)

    @tf.function(input_signature=[tf.TensorSpec([None, 64], tf.float32)])
    def __call__(self, x):
        return {"y": tf.nn.relu(tf.matmul(x, self.w)) * 1e-4}


def test_verification_refuses_a_conversion_that_overflows_and_names_the_node(tmp_path):
    model, output = str(tmp_path / "overflow"), str(tmp_path / "converted")
    tf.saved_model.save(OverflowingProduct(), model)
    refused = subprocess.run([TFMP, "convert", model, output], capture_output=True, text=True)
    assert refused.returncode == 2
    assert "the values first go wrong at node 'MatMul' (MatMul)" in refused.stderr
    assert "--fp32-node '^MatMul$'" in refused.stderr
    assert not os.path.exists(output) and os.listdir(tmp_path) == ["overflow"]
    inputs = {"x": np.random.default_rng(7).standard_normal((4, 64)).astype(np.float32)}
    # TensorFlow confirms the refusal: written anyway, the model serves inf.
    unverified = subprocess.run([TFMP, "convert", "--no-verify", model, output], capture_output=True, text=True)
    assert unverified.returncode == 0, unverified.stderr
    assert not np.all(np.isfinite(run_tf2(output, inputs)["y"]))
    # Following the advice gives a model that verifies, and TensorFlow agrees.
    fixed = subprocess.run([TFMP, "convert", "--force", "--fp32-node", "^MatMul$", model, output],
                           capture_output=True, text=True)
    assert fixed.returncode == 0, fixed.stderr
    assert "verified serving_default" in fixed.stdout
    reference, converted = run_tf2(model, inputs)["y"], run_tf2(output, inputs)["y"]
    assert np.all(np.isfinite(converted))
    assert np.max(np.abs(converted - reference)) <= 5e-3 * max(1.0, np.abs(reference).max())


def keras_bn_net(folder):
    """Conv -> BatchNormalization -> ReLU -> Conv, with statistics from data, exported by Keras."""
    import keras
    keras.utils.set_random_seed(3)
    net = keras.Sequential([keras.Input((16, 16, 3)), keras.layers.Conv2D(8, 3), keras.layers.BatchNormalization(),
                            keras.layers.ReLU(), keras.layers.Conv2D(4, 3)])
    images = np.random.default_rng(3).uniform(0, 255, (4, 16, 16, 3)).astype(np.float32)
    net(images, training=True)
    net.export(folder, format="tf_saved_model", verbose=False)
    return {"keras_tensor": images}


@pytest.mark.parametrize("flags", [[], ["--reduced-normalization"]])
def test_batch_normalization_computes_in_float32_unless_asked(tmp_path, flags):
    model, output = str(tmp_path / "bn"), str(tmp_path / "converted")
    inputs = keras_bn_net(model)
    signature = tf.saved_model.load(model).signatures["serving_default"]
    inputs = {next(iter(signature.structured_input_signature[1])): next(iter(inputs.values()))}
    result = subprocess.run([TFMP, "convert", "--policy", "mixed_bfloat16", *flags, model, output],
                            capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    assert ("normalization (float32, as in Keras)" in result.stdout) == (not flags), result.stdout
    reference = run_tf2(model, inputs)
    for loaded in (run_tf2(output, inputs), run_tf1(output, inputs)):
        for key, expected in reference.items():
            assert np.max(np.abs(loaded[key] - expected)) <= 2.5e-2 * max(1.0, np.abs(expected).max()), key
    graph = loader_impl.parse_saved_model(output).meta_graphs[0].graph_def
    nodes = [n for f in graph.library.function for n in f.node_def]
    applied = [n for n in nodes if "batch_normalization" in n.name and n.name.endswith("batchnorm/mul_1")]
    assert len(applied) == 1
    expected_type = tf.bfloat16 if flags else tf.float32
    assert applied[0].attr["T"].type == expected_type.as_datatype_enum
    convolutions = [n for n in nodes if n.op == "Conv2D"]
    assert convolutions and all(n.attr["T"].type == tf.bfloat16.as_datatype_enum for n in convolutions)


class RotaryPositions(tf.Module):
    """Rotary-style angles, positions times frequencies, over a long sequence: float16 would get the
    angles wrong by up to half a radian beyond position 1024."""

    def __init__(self):
        self.w = tf.Variable(tf.random.stateless_normal([16, 16], seed=[1, 2]) * 0.25)

    @tf.function(input_signature=[tf.TensorSpec([None, None, 16], tf.float32)])
    def __call__(self, x):
        positions = tf.cast(tf.range(tf.shape(x)[1]), tf.float32)
        frequencies = 1.0 / (10000.0 ** (tf.range(0, 16, 2, dtype=tf.float32) / 16.0))
        angles = tf.einsum("i,j->ij", positions, frequencies)
        rotation = tf.concat([tf.sin(angles), tf.cos(angles)], axis=-1)
        return {"y": tf.einsum("btd,de->bte", x * rotation, self.w)}


def test_positions_from_a_range_keep_float32_at_long_sequences(tmp_path):
    model, output = str(tmp_path / "rotary"), str(tmp_path / "converted")
    tf.saved_model.save(RotaryPositions(), model)
    result = subprocess.run([TFMP, "convert", model, output], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    assert "reads positions computed from a Range" in result.stdout
    inputs = {"x": np.ones((1, 2048, 16), np.float32)}
    reference = run_tf2(model, inputs)["y"]
    for loaded in (run_tf2(output, inputs), run_tf1(output, inputs)):
        # float16's rounding of the product alone: a few units of 2^-11 of the output's scale.
        assert np.max(np.abs(loaded["y"] - reference)) <= 5e-3 * max(1.0, np.abs(reference).max())
    graph = loader_impl.parse_saved_model(output).meta_graphs[0].graph_def
    einsums = {n.attr["equation"].s.decode(): n.attr["T"].type
               for f in graph.library.function for n in f.node_def if n.op == "Einsum"}
    assert einsums == {"i,j->ij": tf.float32.as_datatype_enum, "btd,de->bte": tf.float16.as_datatype_enum}
