"""Every gradient tfmp emits against float64 central finite differences: for each op whose
registry entry has a gradient, a small function of a variable `v` (and constants) built with it,
saved as a SavedModel; tfmp inlines, differentiates and runs it (the interop helper); TensorFlow
evaluates the same function in float64 at v +- h for every element of v. The ops whose gradient is
none by definition (shapes, sizes, fills, StopGradient) are checked against GradientTape instead,
which agrees that nothing flows through them. The list of ops comes from the registry, so an op
given a gradient without a case here fails the coverage test."""
import json
import os
import subprocess
import sys

import numpy as np
import tensorflow as tf

from test_interop import HELPER, ROOT

sys.path.insert(0, os.path.join(ROOT, "Scripts"))
import zoo  # noqa: E402

RNG = np.random.default_rng(11)


def uniform(shape, low=-1.0, high=1.0):
    return RNG.uniform(low, high, shape).astype(np.float32)


def away_from(shape, points, low=-1.0, high=1.0, margin=0.15):
    """Values in [low, high] at least `margin` from each of `points` (kinks, ties, poles)."""
    values = uniform(shape, low, high)
    for point in points:
        near = np.abs(values - point) < margin
        values[near] = point + np.where(values[near] >= point, margin, -margin)
    return values


def distinct(shape, low=-1.0, high=1.0):
    """Values spaced apart (no ties for max, min, top-k or max pooling), shuffled."""
    values = np.linspace(low, high, int(np.prod(shape))).astype(np.float32)
    return RNG.permutation(values).reshape(shape)


X34 = uniform([3, 4])
FIXED = {}


def constant(shape, dtype):
    """A constant of random values, the same each time it is asked for with this shape."""
    if tuple(shape) not in FIXED:
        FIXED[tuple(shape)] = uniform(shape)
    return tf.constant(FIXED[tuple(shape)], dtype)


def total(x):
    """A scalar of `x` whose gradient differs element by element."""
    return tf.reduce_sum(tf.square(x))


IMAGE = uniform([1, 6, 6, 2])

# name: (ops it checks, f(v, dtype), initial v). f builds the op on v and constants of `dtype`;
# it must compute the same function in float32 (saved) and float64 (finite differences).
CASES = {
    "abs": (["Abs"], lambda v, t: tf.abs(v), away_from([3, 4], [0.0])),
    "trig": (["Sin", "Cos", "Tan", "Atan", "Asinh"],
             lambda v, t: tf.sin(v) + tf.cos(v) + tf.tan(v) + tf.atan(v) + tf.asinh(v), uniform([3, 4])),
    "inverse_trig": (["Asin", "Acos", "Atanh"],
                     lambda v, t: tf.asin(v) + tf.acos(v) + tf.atanh(v), uniform([3, 4], -0.8, 0.8)),
    "hyperbolic": (["Sinh", "Cosh", "Tanh", "Acosh"],
                   lambda v, t: tf.sinh(v) + tf.cosh(v) + tf.tanh(v) + tf.acosh(2.0 + v), uniform([3, 4])),
    "exponential": (["Exp", "Log", "Log1p", "Sqrt", "Rsqrt", "Reciprocal"],
                    lambda v, t: tf.exp(v) + tf.math.log(v) + tf.math.log1p(v) + tf.sqrt(v)
                    + tf.math.rsqrt(v) + tf.math.reciprocal(v), uniform([3, 4], 0.3, 2.0)),
    "polynomial": (["Square", "Neg", "Pow"],
                   lambda v, t: tf.square(v) - v + tf.pow(v, tf.constant(X34 + 2, t))
                   + tf.pow(tf.constant(np.abs(X34) + 0.5, t), v), uniform([3, 4], 0.2, 1.5)),
    "erf": (["Erf", "Erfc"], lambda v, t: tf.math.erf(v) + 0.5 * tf.math.erfc(v), uniform([3, 4])),
    "atan2": (["Atan2"], lambda v, t: tf.math.atan2(v, constant([3, 4], t)) + tf.math.atan2(constant([3, 1], t), v),
              uniform([3, 4])),
    "activations": (["Relu", "Relu6", "Sigmoid", "LeakyRelu"],
                    lambda v, t: tf.nn.relu(v) + tf.nn.relu6(v) + tf.sigmoid(v) + tf.nn.leaky_relu(v, 0.3),
                    away_from([3, 4], [0.0, 6.0], -3.0, 8.0)),
    "smooth_activations": (["Softplus", "Softsign", "Elu", "Selu", "Expm1"],
                           lambda v, t: tf.nn.softplus(v) + tf.nn.softsign(v) + tf.nn.elu(v) + tf.nn.selu(v)
                           + tf.math.expm1(v) * 0.2,
                           away_from([3, 4], [0.0], -2.0, 2.0)),
    "softmax": (["Softmax", "LogSoftmax"],
                lambda v, t: tf.nn.softmax(v) + tf.nn.log_softmax(v), uniform([3, 4], -2, 2)),
    # Broadcasting: v [3, 1] against [3, 4] constants, summed back over the broadcast axis.
    "arithmetic": (["Add", "AddV2", "Sub", "Mul", "RealDiv", "DivNoNan", "SquaredDifference", "AddN"],
                   lambda v, t: tf.raw_ops.Add(x=v, y=tf.constant(X34, t)) + (v - tf.constant(X34, t)) * v
                   + tf.constant(X34, t) / v + v / tf.constant(X34 + 3, t)
                   + tf.math.divide_no_nan(tf.constant(X34, t), v)
                   + tf.math.squared_difference(v, tf.constant(X34, t)) + tf.add_n([v, v * v, v * 3.0]),
                   uniform([3, 1], 0.5, 1.5)),
    "extremes": (["Maximum", "Minimum", "ClipByValue", "SelectV2"],
                 lambda v, t: tf.maximum(v, 0.0) + tf.minimum(v, tf.constant(X34 * 0.1, t))
                 + tf.raw_ops.ClipByValue(t=v, clip_value_min=tf.constant(-0.5, t), clip_value_max=tf.constant(0.5, t))
                 + tf.where(tf.constant(X34 > 0), v * 2.0, -v),
                 away_from([3, 4], [0.0, -0.5, 0.5] + list((X34 * 0.1).ravel()), margin=0.06)),
    "matmul": (["MatMul", "BatchMatMulV2", "BatchMatMul", "Einsum"],
               lambda v, t: tf.reduce_sum(tf.matmul(tf.constant(X34, t), v, transpose_b=True))
               + tf.reduce_sum(tf.raw_ops.BatchMatMulV2(x=constant([2, 1, 3, 4], t), y=v, adj_y=True))
               + tf.reduce_sum(tf.raw_ops.BatchMatMul(x=tf.reshape(v, [1, 5, 4]),
                                                      y=constant([1, 4, 2], t)))
               + tf.reduce_sum(tf.einsum("bij,kj->bik", constant([2, 3, 4], t), v)),
               uniform([5, 4])),
    "bias": (["BiasAdd"], lambda v, t: tf.nn.bias_add(tf.constant(X34, t), v) ** 2, uniform([4])),
    "convolution": (["Conv2D", "DepthwiseConv2dNative", "Conv2DBackpropInput"],
                    lambda v, t: total(tf.nn.conv2d(tf.constant(IMAGE, t), v, 2, "SAME"))
                    + total(tf.nn.conv2d(tf.constant(IMAGE, t), v, 1, "VALID", dilations=2))
                    + total(tf.nn.depthwise_conv2d(tf.constant(IMAGE, t), v[:, :, :, :1], [1, 1, 1, 1], "SAME"))
                    + total(tf.nn.conv2d_transpose(constant([1, 3, 3, 2], t), v[:, :, :2, :2],
                                                   [1, 6, 6, 2], 2, "SAME")),
                    uniform([3, 3, 2, 3])),
    "convolution_input": (["Conv2D", "Conv2DBackpropInput", "MaxPool", "AvgPool"],
                          lambda v, t: total(tf.nn.conv2d(v, constant([3, 3, 2, 3], t), 1, "SAME"))
                          + total(tf.nn.conv2d_transpose(v[:, ::2, ::2, :], constant([3, 3, 3, 2], t),
                                                         [1, 6, 6, 3], 2, "SAME"))
                          + total(tf.nn.max_pool2d(v, 2, 2, "VALID")) + total(tf.nn.avg_pool2d(v, 3, 2, "SAME")),
                          distinct([1, 6, 6, 2])),
    "normalization": (["FusedBatchNormV3", "FusedBatchNormV2"],
                      lambda v, t: tf.compat.v1.nn.fused_batch_norm(
                          tf.constant(IMAGE, t), v, v * 0.5, mean=tf.constant([0.1, -0.2], t),
                          variance=tf.constant([0.5, 2.0], t), is_training=False)[0]
                      + tf.raw_ops.FusedBatchNormV2(x=tf.constant(IMAGE, t), scale=v * v, offset=v,
                                                    mean=tf.constant([0.3, 0.1], t),
                                                    variance=tf.constant([1.5, 0.7], t), is_training=False)[0],
                      uniform([2], 0.5, 1.5)),
    "reductions": (["Sum", "Mean", "Max", "Min", "Prod", "Cumsum"],
                   lambda v, t: tf.reduce_sum(v, 1) + tf.reduce_mean(v, 1) * 2.0 + tf.reduce_max(v, 1)
                   + tf.reduce_min(v, 1) + tf.reduce_prod(v, 1)
                   + tf.reduce_sum(tf.cumsum(v, 1, exclusive=True, reverse=True) * tf.constant(X34, t), 1),
                   distinct([3, 4], 0.3, 1.5)),
    "shapes": (["Reshape", "ExpandDims", "Squeeze", "Transpose", "Identity", "IdentityN", "Snapshot",
                "BroadcastTo", "Tile", "Roll", "ReverseSequence"],
               lambda v, t: total(tf.reshape(tf.transpose(tf.squeeze(tf.expand_dims(tf.identity(v), 0), 0)), [2, 6])
                                  * constant([2, 6], t))
               + total(tf.identity_n([v, v])[1] * tf.raw_ops.Snapshot(input=v) * tf.constant(X34, t))
               + total(tf.broadcast_to(v[:1], [3, 4]) * tf.tile(v[:, :2], [1, 2]))
               + total(tf.roll(v, [1, -1], [0, 1]) * tf.constant(X34, t))
               + total(tf.reverse_sequence(v, [2, 4, 0], seq_axis=1, batch_axis=0) * constant([3, 4], t)),
               uniform([3, 4])),
    "pieces": (["ConcatV2", "Pack", "Unpack", "Split", "SplitV", "Slice", "StridedSlice"],
               lambda v, t: total(tf.concat([v, v * v], 1)[:, 1:7:2]) + total(tf.stack(tf.unstack(v, axis=1)[::-1], 1)[:, :3])
               + total(tf.split(v, 2, 1)[1] * constant([3, 2], t))
               + total(tf.split(v, [1, 3], 1)[1] * constant([3, 3], t))
               + total(tf.slice(v, [0, 1], [3, 2]) + 1.0),
               uniform([3, 4])),
    "padding": (["Pad", "PadV2", "MirrorPad"],
                lambda v, t: total(tf.pad(v, [[1, 0], [0, 2]]) * tf.pad(v, [[0, 1], [2, 0]], constant_values=1.0))
                + total(tf.pad(v, [[1, 0], [1, 1]], "REFLECT") * tf.pad(v, [[0, 1], [2, 0]], "SYMMETRIC")),
                uniform([3, 4])),
    "gathers": (["GatherV2", "GatherNd", "UnsortedSegmentSum", "TopKV2"],
                lambda v, t: total(tf.gather(v + 0.0, [2, 0, 2]) * constant([3, 4], t))
                + total(tf.gather(v + 0.0, [3, 1, 3], axis=1) * constant([3, 3], t))
                + total(tf.gather(v + 0.0, [[1, 3], [0, 0], [2, 1]], axis=1, batch_dims=1) * constant([3, 2], t))
                + total(tf.gather_nd(v + 0.0, [[0, 1], [2, 3], [0, 1]]) * tf.constant([1.0, -2.0, 0.5], t))
                + total(tf.math.unsorted_segment_sum(v * v, [1, 0, 1], 2))
                + total(tf.math.top_k(v, 2).values * constant([3, 2], t)),
                distinct([3, 4])),
    "resizing": (["ResizeBilinear", "ResizeNearestNeighbor"],
                 lambda v, t: total(tf.cast(tf.image.resize(v, [5, 7], "bilinear"), t))
                 + total(tf.image.resize(v, [7, 5], "nearest") * constant([1, 7, 5, 2], t))
                 + total(tf.compat.v1.image.resize(v, [4, 3], tf.compat.v1.image.ResizeMethod.NEAREST_NEIGHBOR,
                                                   align_corners=True)),
                 uniform([1, 3, 4, 2])),
    "space_to_batch": (["SpaceToBatchND", "BatchToSpaceND"],
                       lambda v, t: total(tf.batch_to_space(
                           tf.space_to_batch_nd(v, [2, 2], [[1, 1], [1, 1]]) * constant([4, 3, 3, 2], t),
                           [2, 2], [[1, 1], [0, 2]])),
                       uniform([1, 4, 4, 2])),
    "volume": (["Conv3D", "Conv3DBackpropInputV2"],
               lambda v, t: total(tf.nn.conv3d(v, constant([2, 2, 2, 2, 3], t), [1, 1, 1, 1, 1], "SAME"))
               + total(tf.nn.conv3d(constant([1, 3, 4, 4, 2], t), tf.reshape(v[0, :2, :2, :2, :], [2, 2, 2, 2, 1]),
                                    [1, 1, 2, 2, 1], "VALID"))
               + total(tf.nn.conv3d_transpose(v[:, :, ::2, ::2, :], constant([2, 2, 2, 3, 2], t),
                                              [1, 3, 4, 4, 3], [1, 1, 2, 2, 1], "SAME")),
               distinct([1, 3, 4, 4, 2])),
    "volume_pooling": (["MaxPool3D", "AvgPool3D"],
                       lambda v, t: total(tf.nn.max_pool3d(v, 2, 1, "VALID")) + total(tf.nn.avg_pool3d(v, 2, 2, "SAME")),
                       distinct([1, 3, 4, 4, 2])),
    "cast": (["Cast"], lambda v, t: tf.cast(tf.cast(v, tf.float64) * 2.0, v.dtype) * v, uniform([3, 4])),
}

# TensorFlow has no float64 fused batch norm or 3-D pooling, and bilinear resizing gives float32
# whatever it is given: their differences are taken in float32.
FLOAT32_DIFFERENCES = {"normalization", "resizing", "volume_pooling"}

# Ops whose registered gradient is none (TensorFlow registers the same): checked against
# GradientTape, finite differences of the function would see what they stop.
NO_GRADIENT = {"StopGradient", "Shape", "Size", "Rank", "Fill", "OneHot", "OnesLike", "ZerosLike", "Range"}


def none_flows(v, t):
    raw = tf.raw_ops  # the ops themselves: tf.shape and the like fold static shapes into constants
    stopped = v * tf.stop_gradient(v)
    shape = raw.Shape(input=v)
    counted = tf.cast(raw.Size(input=v) + raw.Rank(input=v) + shape[0], v.dtype)
    filled = raw.Fill(dims=shape, value=tf.constant(2.0, t)) + raw.OnesLike(x=v) + raw.ZerosLike(x=v)
    hot = tf.one_hot(tf.range(3), 4, dtype=v.dtype)
    return stopped + counted * v + filled * v + hot * v


class Cases(tf.Module):
    """One variable per case; one output per case."""

    def __init__(self, cases):
        super().__init__()
        self.cases = cases
        self.values = {name: tf.Variable(initial, name=name) for name, (_, _, initial) in cases.items()}

    @tf.function(input_signature=[])
    def __call__(self):
        return {name: function(self.values[name], tf.float32) for name, (_, function, _) in self.cases.items()}


def registry_gradient_ops():
    schemas = json.loads(subprocess.run([HELPER, "schemas"], capture_output=True, check=True).stdout)
    return {schema["op"] for schema in schemas if schema["gradient"]}


def test_every_gradient_of_the_registry_has_a_case():
    covered = {op for ops, _, _ in CASES.values() for op in ops} | NO_GRADIENT
    missing = sorted(registry_gradient_ops() - covered)
    assert not missing, f"gradients without a finite-difference case: {missing}"


def saved(cases, folder):
    module = Cases(cases)
    path = os.path.join(folder, "cases")
    tf.saved_model.save(module, path, signatures={"serving_default": module.__call__})
    # Each case's ops are in the saved graph: the case checks what it says it checks.
    graph = tf.saved_model.load(path).signatures["serving_default"].graph.as_graph_def()
    present = {node.op for function in graph.library.function for node in function.node_def}
    present |= {node.op for node in graph.node}
    return module, path, present


def test_gradients_match_float64_finite_differences(tmp_path):
    module, path, present = saved(CASES, str(tmp_path))
    for name, (ops, _, _) in CASES.items():
        assert set(ops) <= present, f"{name}: {sorted(set(ops) - present)} not in the saved graph"
    outputs = module()
    weights = {name: RNG.standard_normal(value.shape).astype(np.float32) for name, value in outputs.items()}
    ours, _ = zoo.split_positions(zoo.tfmp_gradients(HELPER, path, "serving_default", {}, weights, str(tmp_path)))
    failures = []
    for name, (ops, function, initial) in CASES.items():
        key = next(k for k in ours if k.startswith(f"values/{name}/"))
        analytic = ours[key].astype(np.float64)
        dtype = tf.float32 if name in FLOAT32_DIFFERENCES else tf.float64
        step = 1e-3 if dtype == tf.float32 else 1e-6
        weight = tf.constant(weights[name], dtype)
        point = initial.astype(np.float64)

        def loss(values):
            return float(tf.reduce_sum(weight * function(tf.constant(values, dtype), dtype)))

        numeric = np.zeros_like(point)
        for index in np.ndindex(point.shape):
            up, down = point.copy(), point.copy()
            up[index] += step
            down[index] -= step
            numeric[index] = (loss(up) - loss(down)) / (2 * step)
        scale = max(float(np.max(np.abs(numeric))), 1e-3)
        error = float(np.max(np.abs(analytic - numeric))) / scale
        # tfmp computes in float32 (measured: at most 1.3e-7 of the scale against float64
        # differences); float32 differences themselves err by about 1e-4 (measured 2e-4).
        print(f"{name}: {error:.1e} of {scale:.2g} ({dtype.name} differences)")
        if error > (1e-3 if dtype == tf.float32 else 1e-5):
            failures.append(f"{name} ({', '.join(ops)}): {error:.1e} of {scale:.2g}")
    assert not failures, failures


class NoGradient(tf.Module):
    def __init__(self):
        super().__init__()
        self.v = tf.Variable(uniform([3, 4]))

    @tf.function(input_signature=[])
    def __call__(self):
        return {"y": none_flows(self.v, tf.float32)}


def test_ops_without_gradient_stop_it_as_gradient_tape_does(tmp_path):
    module = NoGradient()
    path = str(tmp_path / "none")
    tf.saved_model.save(module, path, signatures={"serving_default": module.__call__})
    graph = tf.saved_model.load(path).signatures["serving_default"].graph.as_graph_def()
    present = {node.op for function in graph.library.function for node in function.node_def}
    assert NO_GRADIENT <= present | {node.op for node in graph.node}, sorted(NO_GRADIENT - present)
    differences = zoo.gradient_differences(HELPER, path, "serving_default", {}, str(tmp_path))
    assert len(differences) == 1
    for key, (difference, scale) in differences.items():
        assert scale > 0 and difference <= 1e-6 * scale, f"{key}: {difference} of {scale}"
