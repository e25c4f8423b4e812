"""tfmp's gradients against TensorFlow's: for a SavedModel signature, tfmp inlines the graph and emits
the gradient of a weighted sum of its outputs with respect to every variable, as TensorFlow ops
(MatMul with transposes, Conv2DBackpropInput/Filter, ReluGrad, BiasAddGrad, MaxPoolGrad, softmax's,
...), and its runtime runs them; TensorFlow's GradientTape differentiates the same restored function.
Random weights on every output element make this a whole vector-Jacobian product per variable."""
import os
import sys

import numpy as np
import tensorflow as tf
import pytest

from test_interop import HELPER, ROOT, eigen_tensorflow, tfmp

sys.path.insert(0, os.path.join(ROOT, "Scripts"))
import zoo  # noqa: E402

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
    # A grouped convolution, one channel per group, as ConvNeXt's depthwise layers are written.
    h = keras.layers.Conv2D(8, 3, padding="same", groups=8, bias_initializer="random_normal")(h)
    h = keras.layers.Conv2D(6, 3, strides=2, activation="relu6", bias_initializer="random_normal")(h)
    h = keras.layers.Flatten()(h)
    keras.Model(image, {"y": dense(4)(h) + keras.ops.mean(h, axis=-1, keepdims=True)}).export(
        os.path.join(folder, "cnn"), verbose=False)
    made["cnn"] = {"image": (3, 10, 10, 3)}
    # Resizing up and down as segmentation nets do: nearest (UpSampling2D), bilinear with half
    # pixel centers (Resizing), and tf.image.resize's align_corners variant; then the
    # convolutions of segmentation decoders.
    h = keras.layers.Conv2D(4, 3, padding="same", bias_initializer="random_normal")(image)
    up = keras.layers.UpSampling2D(2)(h)
    smooth = keras.layers.Resizing(7, 13, interpolation="bilinear")(up)
    corners = keras.layers.Lambda(lambda t: tf.compat.v1.image.resize_bilinear(t, [5, 9], align_corners=True))(h)
    # A transposed convolution (Conv2DBackpropInput) and a dilated one (SpaceToBatchND, Conv2D,
    # BatchToSpaceND), as UNet and DeepLab write them.
    smooth = keras.layers.Conv2DTranspose(3, 3, strides=2, padding="same")(smooth)
    smooth = keras.layers.Conv2D(3, 3, dilation_rate=2, padding="same", bias_initializer="random_normal")(smooth)
    h = keras.layers.Conv2D(3, 3, bias_initializer="random_normal")(smooth)
    keras.Model(image, {"y": dense(2)(keras.layers.Flatten()(h)), "corners": dense(2)(keras.layers.Flatten()(corners))}).export(
        os.path.join(folder, "resize"), verbose=False)
    made["resize"] = {"image": (2, 10, 10, 3)}
    return made


def compare(path, signature, shapes, scratch, tolerance):
    """tfmp's gradients against TensorFlow's on seeded inputs of `shapes`; returns TensorFlow's
    gradients by variable."""
    rng = np.random.default_rng(5)
    inputs = {name: rng.standard_normal(shape).astype(np.float32) for name, shape in shapes.items()}
    differences = zoo.gradient_differences(HELPER, path, signature, inputs, scratch)
    assert differences
    for key, (difference, scale) in differences.items():
        assert scale > 0, key[0]
        assert difference <= tolerance * scale, f"{key[0]}: {difference} of {scale}"
    return differences


@pytest.fixture(scope="module")
def models(tmp_path_factory):
    folder = str(tmp_path_factory.mktemp("gradient_models"))
    return folder, keras_models(folder)


@pytest.mark.parametrize("name", ["mlp", "cnn", "resize"])
def test_gradients_match_gradient_tape(models, tmp_path, name):
    folder, shapes = models
    assert len(compare(os.path.join(folder, name), "serve", shapes[name], str(tmp_path), 1e-4)) >= 4


class ElementwiseModule(tf.Module):
    """The elementwise ops whose gradients fine-tuning's losses and geometry code need: inverse
    and hyperbolic trigonometry, abs, log1p, clipping."""

    def __init__(self):
        super().__init__()
        self.w = tf.Variable(np.linspace(0.2, 0.8, 6).astype("float32"))

    @tf.function(input_signature=[tf.TensorSpec([3, 6], tf.float32)])
    def __call__(self, x):
        t = tf.tanh(x) * self.w  # inside (-1, 1)
        u = x * self.w
        return {"y": tf.asin(t) + 0.5 * tf.acos(t) + tf.atan(u) + tf.atanh(t) + tf.tan(t) + tf.asinh(u)
                + tf.acosh(2.0 + tf.abs(u)) + tf.math.log1p(tf.abs(t)) + tf.clip_by_value(u, -0.3, 0.3)}


def test_elementwise_gradients_match_gradient_tape(tmp_path):
    module = ElementwiseModule()
    path = str(tmp_path / "elementwise")
    tf.saved_model.save(module, path, signatures={"serving_default": module.__call__})
    assert len(compare(path, "serving_default", {"x": (3, 6)}, str(tmp_path), 1e-5)) == 1


class ProductModule(tf.Module):
    """Products over one axis, over two with the dimensions kept, and over all, a weight of 0
    (whose gradient is the product of the others, not a division by it) included; and a
    gather_nd that takes one row twice (its gradients add up)."""

    def __init__(self):
        super().__init__()
        values = np.linspace(0.5, 1.5, 24).astype("float32")
        values[5] = 0.0
        self.w = tf.Variable(values.reshape(2, 3, 4))

    @tf.function(input_signature=[tf.TensorSpec([2, 3, 4], tf.float32)])
    def __call__(self, x):
        u = x * self.w
        return {"y": tf.reduce_sum(tf.reduce_prod(u, axis=-1)) + tf.reduce_sum(
            tf.reduce_prod(u, axis=[0, 2], keepdims=True)) + tf.reduce_prod(u)
            + tf.reduce_sum(tf.gather_nd(u, [[0, 1], [1, 2], [0, 1]]) * tf.range(4.0))}


def test_product_and_gather_gradients_match_gradient_tape(tmp_path):
    module = ProductModule()
    path = str(tmp_path / "product")
    tf.saved_model.save(module, path, signatures={"serving_default": module.__call__})
    differences = compare(path, "serving_default", {"x": (2, 3, 4)}, str(tmp_path), 1e-5)
    assert len(differences) == 1


def eigen_gradients(path, inputs, weights, keys, scratch):
    """zoo.tensorflow_gradients of the serving signature, in TensorFlow's Eigen kernels."""
    fed, out = os.path.join(scratch, "eigen_fed.npz"), os.path.join(scratch, "eigen_gradients.npz")
    np.savez(fed, **inputs, **{f"{name}_weight": w for name, w in weights.items()})
    eigen_tensorflow(
        "import sys, numpy as np, zoo\n"
        "data = np.load(sys.argv[2]); keys = sys.argv[4:]\n"
        "weights = {k[:-7]: data[k] for k in data.files if k.endswith('_weight')}\n"
        "inputs = {k: data[k] for k in data.files if not k.endswith('_weight')}\n"
        "found = zoo.tensorflow_gradients(sys.argv[1], 'serving_default', inputs, weights, keys)\n"
        "np.savez(sys.argv[3], **{str(i): found[k] for i, k in enumerate(keys)})\n",
        path, fed, out, *keys)
    with np.load(out) as data:
        return {key: data[str(index)] for index, key in enumerate(keys)}


def test_digits_gradients_match_in_float32_and_through_float16_with_master_weights(tmp_path):
    """The shipped digits CNN, and its float16 conversion with float32 master weights: there every
    product computes in float16 and each weight's gradient comes back to float32 through its Cast."""
    shapes = {"image": (6, 8, 8, 1)}
    assert len(compare(DIGITS, "serving_default", shapes, str(tmp_path), 1e-4)) == 8
    converted = str(tmp_path / "digits16")
    result = tfmp("convert", DIGITS, converted, "--weights", "float32")
    assert result.returncode == 0, result.stderr
    # tfmp's float16 gradients are TensorFlow's float16 gradients, not float32 ones: measured,
    # within 1.8e-3 of TensorFlow's (relative to each gradient's largest element), which differ
    # from the float32 gradients by up to 3.3e-2. TensorFlow's reference is its Eigen kernels,
    # which accumulate float16 products in float32 as tfmp and Tensor Cores do: oneDNN's float16
    # kernels differ by CPU (on an AVX512-FP16 Xeon without AMX they gave 9.8e-3 from tfmp's).
    rng = np.random.default_rng(5)
    inputs = {"image": rng.standard_normal((6, 8, 8, 1)).astype(np.float32)}
    weights = {"output_0": rng.standard_normal((6, 10)).astype(np.float32)}
    ours, _ = zoo.split_positions(
        zoo.tfmp_gradients(HELPER, converted, "serving_default", inputs, weights, str(tmp_path)))
    float16 = eigen_gradients(converted, inputs, weights, sorted(ours), str(tmp_path))
    float32 = zoo.tensorflow_gradients(DIGITS, "serving_default", inputs, weights, sorted(ours))
    assert len(ours) == 8

    def largest(a, b):
        return max(float(np.max(np.abs(a[k] - b[k])) / np.max(np.abs(b[k]))) for k in b)
    assert largest(ours, float16) <= 5e-3
    assert largest(ours, float16) < largest(float16, float32) / 3
