"""Interop tests for `.keras` conversion: real Keras 3 loads the converted archive, trains it in
mixed precision with the loss scaling Keras documents, and predicts close to the original.

Prediction tolerances are those of test_convert.py (5e-3 for float16, 2.5e-2 for bfloat16, relative
to the largest output magnitude), for the same reason; the largest errors measured here are 4.2e-4
and 3.7e-3 (the LSTM).
"""
import json
import os
import subprocess
import warnings
import zipfile

import numpy as np
import pytest
import keras

from test_interop import FIXTURES, MANIFEST, TFMP

ARCHIVES = MANIFEST["keras_archives"]
POLICIES = {"mixed_float16": 5e-3, "mixed_bfloat16": 2.5e-2}


def convert(name, tmp_path, *options):
    out = str(tmp_path / f"{name}.keras")
    result = subprocess.run([TFMP, "convert", os.path.join(FIXTURES, name + ".keras"), out,
                             "--report", out + ".json", *options], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    return out, json.load(open(out + ".json"))


def load(path):
    with warnings.catch_warnings():
        # The saved Adam state does not fit a LossScaleOptimizer; Keras warns and restarts it.
        warnings.simplefilter("ignore")
        return keras.saving.load_model(path)


def all_layers(model):
    for layer in model.layers:
        yield layer
        if hasattr(layer, "layers"):
            yield from all_layers(layer)


def data(name):
    with np.load(os.path.join(FIXTURES, name + ".data.npz")) as arrays:
        labels = arrays["labels"]
        inputs = [arrays[k] for k in arrays.files if k != "labels"]
    return (inputs[0] if len(inputs) == 1 else inputs), labels


@pytest.mark.parametrize("policy", sorted(POLICIES))
@pytest.mark.parametrize("name", ARCHIVES)
def test_converted_archive_loads_trains_and_predicts(name, policy, tmp_path):
    out, report = convert(name, tmp_path, "--policy", policy)
    original, converted = load(os.path.join(FIXTURES, name + ".keras")), load(out)
    expected = {layer["name"]: layer["policy"] for layer in report["layers"]}
    for layer in all_layers(converted):
        if layer.name in expected:
            assert layer.dtype_policy.name == expected[layer.name], layer.name
    assert any(policy == p for p in expected.values())
    output_layer = converted.layers[-1]
    if output_layer.name == "probabilities":
        assert output_layer.dtype_policy.name == "float32"
    if policy == "mixed_float16":
        assert type(converted.optimizer).__name__ == "LossScaleOptimizer"
        assert float(converted.optimizer.initial_scale) == 32768.0
        assert converted.optimizer.dynamic_growth_steps == 2000
    else:
        assert type(converted.optimizer).__name__ == "Adam"
    x, y = data(name)
    reference = original.predict(x, verbose=0)
    predictions = converted.predict(x, verbose=0)
    assert predictions.dtype == np.float32 or output_layer.dtype_policy.name != "float32"
    scale = max(1.0, float(np.max(np.abs(reference))))
    assert np.max(np.abs(predictions.astype(np.float64) - reference)) <= POLICIES[policy] * scale
    history = converted.fit(x, y, epochs=2, batch_size=2, verbose=0)
    assert np.all(np.isfinite(history.history["loss"]))
    if policy == "mixed_float16":
        # Keras halves the scale and skips the update on each non-finite step, and no growth is
        # due before 2000 finite steps.
        steps = 2 * (len(y) // 2)
        skipped = steps - int(converted.optimizer.iterations.numpy())
        assert float(converted.optimizer.dynamic_scale.numpy()) == 32768.0 * 0.5**skipped


def test_loss_scale_settings_are_honoured(tmp_path):
    out, _ = convert("keras_dense", tmp_path, "--initial-scale", "1", "--growth-steps", "2")
    model = load(out)
    x, y = data("keras_dense")
    model.fit(x, y, epochs=3, batch_size=2, verbose=0)  # 6 steps, all finite at such small scales
    steps = 3 * (len(y) // 2)
    assert int(model.optimizer.iterations.numpy()) == steps
    assert float(model.optimizer.dynamic_scale.numpy()) == 2.0 ** (steps // 2)
    assert int(model.optimizer.step_counter.numpy()) == steps % 2


def test_user_overrides_and_no_loss_scale(tmp_path):
    out, report = convert("keras_nested", tmp_path, "--fp32-layer", "middle", "--fp32-class",
                          "BatchNormalization", "--no-loss-scale")
    model = load(out)
    policies = {layer.name: layer.dtype_policy.name for layer in all_layers(model)}
    assert policies["middle"] == "float32"
    assert policies["inner_bn"] == "float32"
    assert policies["inner_dense"] == "mixed_float16"
    assert type(model.optimizer).__name__ == "Adam"


@pytest.mark.parametrize("name", ARCHIVES)
def test_every_entry_but_the_config_is_byte_identical(name, tmp_path):
    out, _ = convert(name, tmp_path)
    with zipfile.ZipFile(os.path.join(FIXTURES, name + ".keras")) as a, zipfile.ZipFile(out) as b:
        assert [i.filename for i in a.infolist()] == [i.filename for i in b.infolist()]
        for info in a.infolist():
            if info.filename != "config.json":
                assert a.read(info.filename) == b.read(info.filename), info.filename
    raw_in = open(os.path.join(FIXTURES, name + ".keras"), "rb").read()
    raw_out = open(out, "rb").read()
    weights = zipfile.ZipFile(out).getinfo("model.weights.h5")
    assert weights.compress_type == 0
    assert raw_out.count(zipfile.ZipFile(os.path.join(FIXTURES, name + ".keras")).read("model.weights.h5")) == 1
    assert len(raw_out) - len(raw_in) == zipfile.ZipFile(out).getinfo("config.json").file_size - \
        zipfile.ZipFile(os.path.join(FIXTURES, name + ".keras")).getinfo("config.json").file_size


@pytest.mark.parametrize("name", ARCHIVES)
def test_inspect_matches_keras_view(name):
    path = os.path.join(FIXTURES, name + ".keras")
    result = subprocess.run([TFMP, "inspect", "--json", path], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    summary = json.loads(result.stdout)
    model = load(path)
    layers = {layer["name"]: layer for layer in summary["layers"]}
    for layer in all_layers(model):
        if hasattr(layer, "layers") or type(layer).__name__ == "InputLayer":
            continue
        ours = layers[layer.name]
        assert ours["className"] == type(layer).__name__
        assert ours["policy"] == layer.dtype_policy.name
        # Sub-objects (attention projections, an RNN cell) are stored in another order.
        assert sorted((w["shape"], w["dtype"]) for w in ours["weights"]) == \
            sorted((list(w.shape), w.dtype) for w in layer.weights), layer.name
    assert summary["optimizer"] == type(model.optimizer).__name__
    assert len(summary["optimizerVariables"]) == len(model.optimizer.variables)


@pytest.mark.parametrize("policy", sorted(POLICIES))
def test_op_layers_keep_their_tensors_and_the_model_loads(policy, tmp_path):
    """A residual `x + f(x)` and a hard-swish `x * relu6(x + 3) / 6` are op layers, whose nodes
    record KerasTensors with a `dtype` of their own. Only layer policies change. Regression: the
    KerasTensor dtypes became policy objects and Keras refused the file ("unhashable type: 'dict'")."""
    inputs = keras.Input((16,), name="features")
    hidden = keras.layers.Dense(16, name="hidden")(inputs)
    residual = hidden + keras.layers.Dense(16, name="attention")(hidden)
    swished = residual * keras.ops.relu6(residual + 3) / 6
    outputs = keras.layers.Dense(4, activation="softmax", name="probabilities")(swished)
    model = keras.Model(inputs, outputs)
    model.compile(optimizer="adam", loss="sparse_categorical_crossentropy")
    original, out = str(tmp_path / "ops.keras"), str(tmp_path / "converted.keras")
    model.save(original)
    result = subprocess.run([TFMP, "convert", original, out, "--policy", policy], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    with zipfile.ZipFile(out) as archive:
        config = json.loads(archive.read("config.json"))
    tensor_dtypes = {argument["config"]["dtype"] for layer in config["config"]["layers"]
                     for node in layer["inbound_nodes"] for argument in node["args"]
                     if isinstance(argument, dict) and argument.get("class_name") == "__keras_tensor__"}
    assert tensor_dtypes == {"float32"}
    converted = load(out)
    policies = {layer.name: layer.dtype_policy.name for layer in converted.layers}
    assert policies["hidden"] == policies["attention"] == policy
    assert policies["probabilities"] == "float32"
    x = np.random.default_rng(6).standard_normal((8, 16)).astype(np.float32)
    reference, predictions = model.predict(x, verbose=0), converted.predict(x, verbose=0)
    assert np.max(np.abs(predictions - reference)) <= POLICIES[policy]
    history = converted.fit(x, np.arange(8) % 4, epochs=2, batch_size=4, verbose=0)
    assert np.all(np.isfinite(history.history["loss"]))


@keras.saving.register_keras_serializable(package="tfmp_test")
class ScaledDense(keras.layers.Layer):
    """A custom layer whose config carries the base layer's, dtype policy included."""

    def __init__(self, units, **kwargs):
        super().__init__(**kwargs)
        self.units = units

    def build(self, shape):
        self.kernel = self.add_weight(shape=(shape[-1], self.units), name="kernel")
        self.scale = self.add_weight(shape=(), initializer="ones", name="scale")

    def call(self, x):
        return keras.ops.matmul(x, self.kernel) * self.scale

    def get_config(self):
        return {**super().get_config(), "units": self.units}


@keras.saving.register_keras_serializable(package="tfmp_test")
class Gate(keras.layers.Layer):
    """A custom layer whose `get_config` leaves out the base layer's: it has no policy to set."""

    def __init__(self, units):
        super().__init__()
        self.units = units

    def build(self, shape):
        self.kernel = self.add_weight(shape=(shape[-1], self.units), name="kernel")

    def call(self, x):
        return keras.ops.sigmoid(keras.ops.matmul(x, self.kernel)) * x[..., : self.units]

    def get_config(self):
        return {"units": self.units}


@pytest.mark.parametrize("policy", sorted(POLICIES))
def test_shared_nested_and_custom_layers(policy, tmp_path):
    """A layer shared by two inputs, a Sequential inside a functional model and two registered
    custom layers: the one whose config has a policy gets the mixed policy and computes in it;
    the one whose config has none is listed as left alone and loads as it was."""
    left, right = keras.Input((12,), name="left"), keras.Input((12,), name="right")
    shared = keras.layers.Dense(12, activation="relu", name="shared")
    block = keras.Sequential([keras.layers.Dense(16, activation="gelu", name="block_dense"),
                              keras.layers.LayerNormalization(name="block_norm")], name="block")
    merged = keras.layers.Concatenate(name="merge")([shared(left), shared(right)])
    hidden = ScaledDense(12, name="scaled")(block(merged))
    outputs = keras.layers.Dense(3, activation="softmax", name="probabilities")(Gate(12)(hidden))
    model = keras.Model([left, right], outputs)
    model.compile(optimizer="adam", loss="sparse_categorical_crossentropy")
    original, out = str(tmp_path / "layers.keras"), str(tmp_path / "converted.keras")
    model.save(original)
    result = subprocess.run([TFMP, "convert", original, out, "--policy", policy,
                             "--report", out + ".json"], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    report = json.load(open(out + ".json"))["layers"]
    [gate] = [layer for layer in report if layer["className"] == "Gate"]
    assert gate["policy"] == "float32" and gate["reason"].startswith("left alone")
    assert f"{gate['name']} float32 (left alone" in result.stdout
    assert sum(layer["policy"] == policy for layer in report) == 5
    converted = load(out)
    policies = {layer.name: layer.dtype_policy.name for layer in all_layers(converted)}
    for name in ["shared", "block_dense", "block_norm", "scaled"]:
        assert policies[name] == policy, name
    assert policies["probabilities"] == "float32"
    assert [layer.dtype_policy.name for layer in converted.layers
            if isinstance(layer, Gate)] == ["float32"]
    scaled = converted.get_layer("scaled")
    assert scaled.compute_dtype == policy.removeprefix("mixed_")
    assert scaled.kernel.dtype == "float32"
    rng = np.random.default_rng(8)
    x = [rng.standard_normal((8, 12)).astype(np.float32) for _ in range(2)]
    reference, predictions = model.predict(x, verbose=0), converted.predict(x, verbose=0)
    assert predictions.dtype == np.float32
    assert np.max(np.abs(predictions - reference)) <= POLICIES[policy]
    assert np.max(np.abs(predictions - reference)) > 0  # the mixed layers computed low
    history = converted.fit(x, np.arange(8) % 3, epochs=2, batch_size=4, verbose=0)
    assert np.all(np.isfinite(history.history["loss"]))
