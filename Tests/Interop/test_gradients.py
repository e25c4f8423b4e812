"""tfmp's gradients against TensorFlow's: for a SavedModel signature, tfmp inlines the graph and emits
the gradient of a weighted sum of its outputs with respect to every variable, as TensorFlow ops
(MatMul with transposes, Conv2DBackpropInput/Filter, ReluGrad, BiasAddGrad, MaxPoolGrad, softmax's,
...), and its runtime runs them; TensorFlow's GradientTape differentiates the same restored function.
Random weights on every output element make this a whole vector-Jacobian product per variable."""
import os
import subprocess

import numpy as np
import pytest
import tensorflow as tf

from test_interop import HELPER, ROOT, tfmp

DIGITS = os.path.join(ROOT, "Examples", "digits")


def keras_models(folder):
    """Small Keras models covering the ops whose gradients tfmp registers, exported."""
    import keras
    keras.utils.set_random_seed(21)
    # Random biases: zero ones would be alike, and variables are matched by value.
    dense = lambda units, **kwargs: keras.layers.Dense(units, bias_initializer="random_normal", **kwargs)
    made = {}
    x = keras.Input((12,), name="x")
    h = dense(16, activation="relu")(x)
    h = dense(16, activation="tanh")(h)
    h = dense(8, activation="sigmoid")(h) * dense(8)(h) - h[:, :8] / 3.0
    keras.Model(x, {"probabilities": dense(5, activation="softmax")(h),
                    "log_probabilities": dense(3, activation="log_softmax")(h)}).export(
        os.path.join(folder, "mlp"), verbose=False)
    made["mlp"] = {"x": (4, 12)}
    image = keras.Input((10, 10, 3), name="image")
    h = keras.layers.Conv2D(8, 3, activation="relu", padding="same", bias_initializer="random_normal")(image)
    h = keras.layers.MaxPooling2D()(h)
    h = keras.layers.Conv2D(6, 3, strides=2, activation="relu6", bias_initializer="random_normal")(h)
    h = keras.layers.Flatten()(h)
    keras.Model(image, {"y": dense(4)(h) + keras.ops.mean(h, axis=-1, keepdims=True)}).export(
        os.path.join(folder, "cnn"), verbose=False)
    made["cnn"] = {"image": (3, 10, 10, 3)}
    return made


def tensorflow_gradients(path, signature, inputs, weights):
    """Each variable's gradient by GradientTape through the restored signature, keyed by the
    variable's shape and value (a Keras export saves each variable under two checkpoint keys)."""
    loaded = tf.saved_model.load(path)  # kept: its signature's variables live as long as it
    function = loaded.signatures[signature]
    variables = function.variables
    with tf.GradientTape() as tape:
        for variable in variables:
            tape.watch(variable)
        outputs = function(**{k: tf.constant(v) for k, v in inputs.items()})
        loss = tf.add_n([tf.reduce_sum(tf.cast(outputs[name], tf.float32) * weight)
                         for name, weight in weights.items()])
    gradients = tape.gradient(loss, variables)
    return {(tuple(v.shape), v.numpy().tobytes()): tf.convert_to_tensor(g).numpy()
            for v, g in zip(variables, gradients) if g is not None}


def by_value(path, gradients):
    """tfmp's gradients (keyed by checkpoint key) keyed as `tensorflow_gradients` keys them."""
    reader = tf.train.load_checkpoint(os.path.join(path, "variables", "variables"))
    result = {}
    for key, gradient in gradients.items():
        value = reader.get_tensor(key)
        result[(value.shape, value.tobytes())] = gradient
    return result


def tfmp_gradients(path, signature, inputs, weights, scratch):
    fed = os.path.join(scratch, "fed.npz")
    np.savez(fed, **inputs, **{f"{name}_weight": w for name, w in weights.items()})
    out = os.path.join(scratch, "gradients.npz")
    result = subprocess.run([HELPER, "gradients", path, signature, fed, out], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    with np.load(out) as data:
        return {k: data[k] for k in data.files}


def compare(path, signature, shapes, scratch, tolerance):
    rng = np.random.default_rng(5)
    inputs = {name: rng.standard_normal(shape).astype(np.float32) for name, shape in shapes.items()}
    loaded = tf.saved_model.load(path)
    outputs = loaded.signatures[signature](**{k: tf.constant(v) for k, v in inputs.items()})
    weights = {name: rng.standard_normal(value.shape).astype(np.float32) for name, value in outputs.items()}
    ours = by_value(path, tfmp_gradients(path, signature, inputs, weights, scratch))
    theirs = tensorflow_gradients(path, signature, inputs, weights)
    assert theirs and set(ours) == set(theirs), ([k[0] for k in ours], [k[0] for k in theirs])
    for key, expected in theirs.items():
        scale = float(np.max(np.abs(expected))) or 1.0
        difference = float(np.max(np.abs(ours[key].astype(np.float64) - expected)))
        assert difference <= tolerance * scale, f"{key[0]}: {difference} of {scale}"
        assert np.any(expected != 0), key[0]
    return theirs


@pytest.fixture(scope="module")
def models(tmp_path_factory):
    folder = str(tmp_path_factory.mktemp("gradient_models"))
    return folder, keras_models(folder)


@pytest.mark.parametrize("name", ["mlp", "cnn"])
def test_gradients_match_gradient_tape(models, tmp_path, name):
    folder, shapes = models
    assert len(compare(os.path.join(folder, name), "serve", shapes[name], str(tmp_path), 1e-4)) >= 4


def test_digits_gradients_match_in_float32_and_through_float16_with_master_weights(tmp_path):
    """The shipped digits CNN, and its float16 conversion with float32 master weights: there every
    product computes in float16 and each weight's gradient comes back to float32 through its Cast."""
    shapes = {"image": (6, 8, 8, 1)}
    float32 = compare(DIGITS, "serving_default", shapes, str(tmp_path), 1e-4)
    assert len(float32) == 8
    converted = str(tmp_path / "digits16")
    result = tfmp("convert", DIGITS, converted, "--weights", "float32")
    assert result.returncode == 0, result.stderr
    # Measured: tfmp's float16 gradients within 1.8e-3 of TensorFlow's (relative to each
    # gradient's largest element), which differ from the float32 gradients by up to 3.3e-2.
    float16 = compare(converted, "serving_default", shapes, str(tmp_path), 5e-3)
    assert float16.keys() == float32.keys()
    assert max(float(np.max(np.abs(float16[k] - float32[k])) / np.max(np.abs(float32[k]))) for k in float32) > 1e-2
