"""Interop tests for the runtime's op registry: every schema matches TensorFlow's own OpDef, and
ops added through the registry compute what TensorFlow computes."""
import json
import subprocess

import numpy as np
import pytest
import tensorflow as tf
from tensorflow.python.framework import op_def_registry

from test_interop import HELPER, TFMP, run_tf1, run_tf2
from test_run import tfmp_run



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
    for op in ["MatMul", "Conv2D", "Conv3D", "AddN", "GatherV2", "TopKV2", "FusedBatchNormV2", "SpaceToBatch"]:
        assert op in schemas, op
    assert schemas["MatMul"]["kernel"] and not schemas["SpaceToBatch"]["kernel"]


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


class SmallIntegers(tf.Module):
    """uint8, int8, uint16 and int16 tensors, as an image model served on raw pixels sees them:
    casts both ways (in range, and integers wrapped into the narrow type), arithmetic that wraps,
    and the movements and choices that keep the type."""

    @tf.function(input_signature=[tf.TensorSpec([2, 4], tf.uint8), tf.TensorSpec([2, 4], tf.int32),
                                  tf.TensorSpec([2, 4], tf.float32)])
    def __call__(self, pixels, wide, x):
        scaled = tf.cast(pixels, tf.float32) / 255.0
        return {
            "scaled": scaled,
            "sum": pixels + tf.constant(100, tf.uint8),  # wraps above 255
            "product": tf.cast(wide, tf.int16) * tf.constant(300, tf.int16),  # wraps
            "to_uint8": tf.cast(wide, tf.uint8),
            "to_int8": tf.cast(wide, tf.int8),
            "to_uint16": tf.cast(x * 1000.0, tf.uint16),
            "from_float": tf.cast(tf.abs(x) * 100.0, tf.uint8),
            "moved": tf.reverse(tf.transpose(pixels), [0]),
            "largest": tf.reduce_max(pixels, axis=1),
            "label": tf.cast(tf.argmax(scaled, axis=1), tf.uint8),
            "brighter": tf.cast(pixels, tf.int32) > 128,
        }


def test_small_integer_types_match_tensorflow(tmp_path):
    inputs = {
        "pixels": np.array([[0, 17, 200, 255], [128, 129, 1, 99]], np.uint8),
        "wide": np.array([[-1, 255, 256, 300], [-129, 127, 128, 70000]], np.int32),
        "x": np.array([[0.2, 1.5, 2.54, 0.0], [1.0, 0.999, 2.0, 0.5]], np.float32),
    }
    # Integers exactly (a tolerance of 1e-6 is below 1); the float division to 1 ulp.
    assert_runs_as_tensorflow(SmallIntegers(), inputs, tmp_path)


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


class IndexingOps(tf.Module):
    """Ops that address elements by computed indices, in their TensorFlow spellings."""

    @tf.function(input_signature=[tf.TensorSpec([2, 3, 4], tf.float32), tf.TensorSpec([3, 2], tf.int32)])
    def __call__(self, x, pairs):
        raw = tf.raw_ops
        values, indices = tf.math.top_k(tf.reshape(x, [6, 4]), k=3)
        ties = tf.constant([[1.0, 3.0, 3.0, 2.0, 3.0]])
        return {
            "gathered_nd": tf.gather_nd(x, pairs), "gathered_rows": raw.Gather(params=x, indices=[1, 0, 1]),
            "batch_gathered": tf.gather(x, tf.constant([[3, 0], [1, 1]]), axis=2, batch_dims=1),
            "batch_gathered_rows": tf.gather(x, tf.constant([[2, 0, 1, 1], [0, 0, 1, 2]]), axis=1, batch_dims=1),
            "scattered": tf.scatter_nd(pairs, tf.constant([[1.0] * 4, [2.0] * 4, [4.0] * 4]), [2, 3, 4]),
            "one_hot": tf.one_hot(pairs, 4, on_value=2.0, off_value=-1.0, axis=1),
            "one_hot_last": tf.one_hot(tf.constant([0, 3, -1, 5]), 4),
            "top_values": values, "top_indices": indices,
            "tie_indices": tf.math.top_k(ties, k=4).indices,
            "reversed": tf.reverse_sequence(x, [2, 4], seq_axis=2, batch_axis=0),
            "band": tf.linalg.band_part(tf.reshape(x, [2, 3, 4]), 1, 0)
            + tf.linalg.band_part(tf.reshape(x, [2, 3, 4]), -1, 2),
            "mirrored": tf.pad(x, [[0, 0], [1, 2], [2, 3]], mode="SYMMETRIC")[..., :5],
            "reflected": tf.pad(x, [[1, 1], [2, 1], [3, 2]], mode="REFLECT"),
        }


def test_indexing_ops_match_tensorflow(tmp_path):
    rng = np.random.default_rng(7)
    x = rng.standard_normal((2, 3, 4)).astype(np.float32)
    pairs = np.array([[0, 1], [1, 2], [0, 1]], np.int32)
    assert_runs_as_tensorflow(IndexingOps(), {"x": x, "pairs": pairs}, tmp_path)


class MathOps(tf.Module):
    """Trigonometric and hyperbolic functions, DivNoNan, Atan2, ArgMin, Cumprod, L2Loss,
    UnsortedSegmentSum, Rank and Size, and the unary functions TensorFlow defines on integers."""

    @tf.function(input_signature=[tf.TensorSpec([2, 5], tf.float32), tf.TensorSpec([2, 5], tf.int32)])
    def __call__(self, x, counts):
        unit = tf.tanh(x)  # inside (-1, 1)
        return {
            "trigonometric": tf.tan(unit) + tf.atan(x) + tf.asin(unit) + tf.acos(unit),
            "hyperbolic": tf.sinh(unit) + tf.cosh(unit) + tf.asinh(x) + tf.acosh(2.0 + x * x)
            + tf.atanh(unit * 0.9),
            "divided": tf.math.divide_no_nan(x, tf.round(x)), "angle": tf.atan2(x, unit + 0.5),
            "smallest": tf.argmin(x, axis=1), "smallest_int32": tf.argmin(counts, axis=0, output_type=tf.int32),
            "products": tf.math.cumprod(x, axis=1) + tf.math.cumprod(x, axis=0, exclusive=True, reverse=True),
            "integer_products": tf.math.cumprod(counts, axis=1),
            "l2": tf.nn.l2_loss(x),
            "segments": tf.math.unsorted_segment_sum(x, [1, -1], num_segments=3)
            + tf.cast(tf.math.unsorted_segment_sum(counts, [0, 0], num_segments=3), tf.float32),
            "rank": tf.raw_ops.Rank(input=x), "size": tf.raw_ops.Size(input=counts, out_type=tf.int64),
            "integer_unary": tf.abs(counts) + 2 * tf.negative(counts) + 3 * tf.sign(counts)
            + tf.square(counts) + tf.nn.relu(counts) + tf.ones_like(counts) + tf.zeros_like(counts),
            "wide_unary": tf.abs(tf.cast(counts, tf.int64)) - tf.sign(tf.cast(counts, tf.int64)),
        }


def test_math_ops_match_tensorflow(tmp_path):
    x = np.array([[-3.0, -0.4, 0.0, 0.7, 2.5], [0.2, 1e-3, -1.6, 1.0, 4.0]], np.float32)
    counts = np.arange(10, dtype=np.int32).reshape(2, 5) - 4
    assert_runs_as_tensorflow(MathOps(), {"x": x, "counts": counts}, tmp_path, tolerance=1e-5)


class ImageOps(tf.Module):
    """Resizing (nearest, bilinear, bicubic, area), depth and space rearrangement, the transposed convolution, MaxPoolV2, TF1's
    Concat, FusedBatchNormV2 and EnsureShape."""

    def __init__(self):
        rng = np.random.default_rng(8)
        self.filter = tf.constant(rng.standard_normal((3, 3, 4, 6)).astype(np.float32))

    @tf.function(input_signature=[tf.TensorSpec([2, 5, 6, 4], tf.float32)])
    def __call__(self, x):
        raw = tf.raw_ops
        y = tf.nn.conv2d(x, self.filter, strides=2, padding="SAME")
        scale = tf.constant([1.5, 0.5, 1.0, 2.0])
        return {
            "bilinear": tf.image.resize(x, [9, 4]),
            "bilinear_corners": raw.ResizeBilinear(images=x, size=[7, 11], align_corners=True),
            "bilinear_legacy": raw.ResizeBilinear(images=x, size=[3, 8]),
            "nearest": tf.image.resize(x, [10, 3], method="nearest"),
            "bicubic": tf.image.resize(x, [9, 13], method="bicubic"),
            "bicubic_down": tf.image.resize(x, [3, 4], method="bicubic"),
            "bicubic_corners": raw.ResizeBicubic(images=x, size=[7, 11], align_corners=True),
            "bicubic_legacy": raw.ResizeBicubic(images=x, size=[8, 5]),
            "nearest_corners": raw.ResizeNearestNeighbor(images=x, size=[7, 9], align_corners=True),
            "nearest_legacy": raw.ResizeNearestNeighbor(images=x, size=[4, 13]),
            "area_down": tf.image.resize(x, [3, 4], method="area"),
            "area_up": tf.image.resize(x, [7, 13], method="area"),
            "area_corners": raw.ResizeArea(images=x, size=[4, 9], align_corners=True),
            "deep": tf.nn.space_to_depth(x[:, :4], 2),
            "wide": tf.nn.depth_to_space(tf.concat([x, x], axis=-1), 2),
            "transposed_same": tf.nn.conv2d_transpose(y, self.filter, [2, 5, 6, 4], strides=2, padding="SAME"),
            "transposed_valid": tf.nn.conv2d_transpose(
                x, tf.transpose(self.filter, [0, 1, 3, 2]), [2, 11, 13, 6], strides=2, padding="VALID"),
            "pooled": raw.MaxPoolV2(input=x, ksize=[1, 2, 3, 1], strides=[1, 2, 2, 1], padding="SAME"),
            "joined": raw.Concat(concat_dim=2, values=[x, 2.0 * x]),
            "normalized": raw.FusedBatchNormV2(
                x=x, scale=scale, offset=-scale, mean=scale / 3.0, variance=scale, epsilon=1e-3,
                is_training=False).y,
            "ensured": tf.ensure_shape(x, [None, 5, 6, 4]),
        }


def test_image_ops_match_tensorflow(tmp_path):
    x = np.random.default_rng(9).standard_normal((2, 5, 6, 4)).astype(np.float32)
    assert_runs_as_tensorflow(ImageOps(), {"x": x}, tmp_path, tolerance=1e-5)


class ShiftOps(tf.Module):
    """Roll, as shifted-window attention uses it, and XlaDynamicUpdateSlice, which Keras's
    `ops.slice_update` emits on TensorFlow."""

    @tf.function(input_signature=[tf.TensorSpec([2, 4, 5], tf.float32), tf.TensorSpec([3], tf.int32)])
    def __call__(self, x, starts):
        from tensorflow.compiler.tf2xla.python import xla
        return {
            "rolled": tf.roll(x, shift=[2, -1, 7], axis=[1, 2, 1]),
            "updated": xla.dynamic_update_slice(x, tf.ones([1, 2, 3]), starts),
            "clamped": xla.dynamic_update_slice(x, -tf.ones([2, 3, 2]), starts + 3),
        }


def test_shift_ops_match_tensorflow(tmp_path):
    x = np.random.default_rng(10).standard_normal((2, 4, 5)).astype(np.float32)
    assert_runs_as_tensorflow(ShiftOps(), {"x": x, "starts": np.array([1, 1, 2], np.int32)}, tmp_path)


class LayerOps(tf.Module):
    """What Keras layers emit beyond the basics: dilated convolutions (SpaceToBatchND and
    BatchToSpaceND), 3-D convolution and pooling and the 3-D transposed convolution, Bucketize
    and DenseBincount (Discretization, CategoryEncoding), Where (boolean masks), and
    PlaceholderWithDefault."""

    def __init__(self):
        rng = np.random.default_rng(11)
        self.filter = tf.constant(rng.standard_normal((3, 3, 2, 3)).astype(np.float32))
        self.volume = tf.constant(rng.standard_normal((2, 3, 3, 2, 4)).astype(np.float32))

    @tf.function(input_signature=[tf.TensorSpec([2, 9, 10, 2], tf.float32), tf.TensorSpec([2, 4, 6, 5, 2], tf.float32),
                                  tf.TensorSpec([3, 4], tf.int32)])
    def __call__(self, image, clip, codes):
        raw = tf.raw_ops
        conv = tf.nn.conv3d(clip, self.volume, strides=[1, 1, 2, 1, 1], padding="SAME")
        return {
            "dilated": tf.nn.convolution(image, self.filter, padding="SAME", dilations=2),
            "dilated_valid": tf.nn.convolution(image, self.filter, padding="VALID", dilations=[3, 2]),
            "to_batch": tf.space_to_batch_nd(image, [2, 3], [[1, 0], [1, 1]]),
            "conv3d": conv,
            "conv3d_valid": tf.nn.conv3d(clip, self.volume, strides=[1, 2, 1, 2, 1], padding="VALID"),
            "max3d": tf.nn.max_pool3d(clip, [2, 2, 3], [1, 2, 2], "SAME"),
            "avg3d": tf.nn.avg_pool3d(clip, [2, 3, 2], [2, 1, 2], "SAME"),
            "transposed3d": tf.nn.conv3d_transpose(conv, self.volume, [2, 4, 6, 5, 2], strides=[1, 1, 2, 1, 1],
                                                   padding="SAME"),
            "buckets": raw.Bucketize(input=image[0, :, :, 0], boundaries=[-1.0, 0.0, 0.5, 2.0]),
            "counts": tf.math.bincount(codes, minlength=6, maxlength=6, axis=-1),
            "weighted": raw.DenseBincount(input=codes, size=5, weights=tf.cast(codes, tf.float32) * 0.5),
            "binary": raw.DenseBincount(input=codes[0], size=4, weights=tf.zeros([0]), binary_output=True),
            "where": tf.where(image[..., 0] > 0.5),
            "masked": tf.boolean_mask(image[..., 1], image[..., 0] > 0),
            "defaulted": raw.PlaceholderWithDefault(input=codes, shape=[3, 4]),
        }


def test_layer_ops_match_tensorflow(tmp_path):
    rng = np.random.default_rng(12)
    inputs = {"image": rng.standard_normal((2, 9, 10, 2)).astype(np.float32),
              "clip": rng.standard_normal((2, 4, 6, 5, 2)).astype(np.float32),
              "codes": rng.integers(0, 7, (3, 4)).astype(np.int32)}
    assert_runs_as_tensorflow(LayerOps(), inputs, tmp_path, tolerance=1e-5)


class DetectionOps(tf.Module):
    """Non-maximum suppression as detection post-processing writes it: hard (V2, V3), padded (V4)
    and soft with scores (V5), over boxes in overlapping clusters with some corners flipped and
    some scores tied."""

    @tf.function(input_signature=[tf.TensorSpec([40, 4], tf.float32), tf.TensorSpec([40], tf.float32)])
    def __call__(self, boxes, scores):
        raw = tf.raw_ops
        tied = tf.round(scores * 4.0) / 4.0
        soft = raw.NonMaxSuppressionV5(boxes=boxes, scores=scores, max_output_size=12, iou_threshold=0.6,
                                       score_threshold=0.1, soft_nms_sigma=0.5, pad_to_max_output_size=True)
        padded = raw.NonMaxSuppressionV4(boxes=boxes, scores=tied, max_output_size=30, iou_threshold=0.3,
                                         score_threshold=0.2, pad_to_max_output_size=True)
        return {
            "v2": raw.NonMaxSuppressionV2(boxes=boxes, scores=scores, max_output_size=10, iou_threshold=0.4),
            "v3": tf.image.non_max_suppression(boxes, tied, 15, iou_threshold=0.5, score_threshold=0.3),
            "v4": padded[0], "v4_valid": padded[1],
            "v5": soft[0], "v5_scores": soft[1], "v5_valid": soft[2],
            "hard_v5": raw.NonMaxSuppressionV5(boxes=boxes, scores=scores, max_output_size=40, iou_threshold=0.5,
                                               score_threshold=float("-inf"), soft_nms_sigma=0.0,
                                               pad_to_max_output_size=False)[0],
        }


def test_detection_ops_match_tensorflow(tmp_path):
    rng = np.random.default_rng(12)
    centers = rng.uniform(0, 1, (8, 2))[rng.integers(0, 8, 40)] + rng.normal(0, 0.05, (40, 2))
    sizes = rng.uniform(0.05, 0.3, (40, 2))
    boxes = np.concatenate([centers - sizes / 2, centers + sizes / 2], 1).astype(np.float32)
    boxes[::7] = boxes[::7][:, [2, 3, 0, 1]]  # opposite corners first
    scores = rng.uniform(0, 1, 40).astype(np.float32)
    assert_runs_as_tensorflow(DetectionOps(), {"boxes": boxes, "scores": scores}, tmp_path)


class GradientOps(tf.Module):
    """The ops gradients are written with, called as raw ops: ties in a pooling window (the first
    maximum takes the gradient), SAME and VALID filters with strides, slices with masks."""

    @tf.function(input_signature=[tf.TensorSpec([2, 6, 7, 3], tf.float32), tf.TensorSpec([2, 6, 7, 3], tf.float32)])
    def __call__(self, x, g):
        raw = tf.raw_ops
        tied = tf.round(x * 2.0)
        pooled = tf.nn.max_pool2d(tied, 2, 2, "SAME")
        features = tf.nn.conv2d(x, tf.ones([3, 3, 3, 4]), [1, 2, 2, 1], "VALID")
        sliced = x[:, 1:5:2, ::-1, 1]
        depthwise = tf.nn.depthwise_conv2d(g, tf.ones([3, 3, 3, 2]), [1, 2, 2, 1], "SAME")
        volume = tf.reshape(x, [1, 2, 6, 7, 3])  # NDHWC
        tied_volume = tf.round(volume * 2.0)
        pooled_volume = tf.nn.max_pool3d(tied_volume, 2, 2, "SAME")
        volume_features = tf.nn.conv3d(volume, tf.fill([2, 3, 3, 3, 4], 0.1), [1, 1, 2, 2, 1], "VALID")
        return {
            "relu": raw.ReluGrad(gradients=g, features=x), "relu6": raw.Relu6Grad(gradients=g, features=3 * x),
            "leaky_relu": raw.LeakyReluGrad(gradients=g, features=x, alpha=0.3),
            "tanh": raw.TanhGrad(y=tf.tanh(x), dy=g), "sigmoid": raw.SigmoidGrad(y=tf.sigmoid(x), dy=g),
            "bias": raw.BiasAddGrad(out_backprop=g),
            "max_pool": raw.MaxPoolGrad(orig_input=tied, orig_output=pooled, grad=tf.ones_like(pooled) + pooled,
                                        ksize=[1, 2, 2, 1], strides=[1, 2, 2, 1], padding="SAME"),
            "filter_valid": raw.Conv2DBackpropFilter(input=x, filter_sizes=[3, 3, 3, 4], out_backprop=features,
                                                      strides=[1, 2, 2, 1], padding="VALID"),
            "filter_same": raw.Conv2DBackpropFilter(input=x, filter_sizes=[2, 3, 3, 3], out_backprop=g,
                                                     strides=[1, 1, 1, 1], padding="SAME"),
            "slice": raw.StridedSliceGrad(shape=tf.shape(x), begin=[0, 1, 0, 1], end=[0, 5, 0, 2],
                                          strides=[1, 2, -1, 1], dy=sliced, begin_mask=5, end_mask=5,
                                          shrink_axis_mask=8),
            "broadcast": tf.cast(tf.concat(raw.BroadcastGradientArgs(s0=[2, 1, 7, 1], s1=[6, 1, 3]), 0), tf.float32),
            "average_pool": raw.AvgPoolGrad(orig_input_shape=[2, 6, 7, 3], grad=pooled, ksize=[1, 2, 2, 1],
                                            strides=[1, 2, 2, 1], padding="SAME"),
            "depthwise_input": raw.DepthwiseConv2dNativeBackpropInput(
                input_sizes=[2, 6, 7, 3], filter=tf.reshape(tf.range(54.0) / 50, [3, 3, 3, 2]),
                out_backprop=depthwise, strides=[1, 2, 2, 1], padding="SAME"),
            "depthwise_filter": raw.DepthwiseConv2dNativeBackpropFilter(
                input=x, filter_sizes=[3, 3, 3, 2], out_backprop=depthwise, strides=[1, 2, 2, 1],
                padding="SAME"),
            "inverse": tf.cast(raw.InvertPermutation(x=[2, 0, 3, 1]), tf.float32),
            "filter_3d": raw.Conv3DBackpropFilterV2(input=volume, filter_sizes=[2, 3, 3, 3, 4],
                                                     out_backprop=volume_features, strides=[1, 1, 2, 2, 1],
                                                     padding="VALID"),
            "max_pool_3d": raw.MaxPool3DGrad(orig_input=tied_volume, orig_output=pooled_volume,
                                             grad=tf.ones_like(pooled_volume) + pooled_volume,
                                             ksize=[1, 2, 2, 2, 1], strides=[1, 2, 2, 2, 1], padding="SAME"),
            "average_pool_3d": raw.AvgPool3DGrad(orig_input_shape=[1, 2, 6, 7, 3], grad=pooled_volume,
                                                 ksize=[1, 2, 2, 2, 1], strides=[1, 2, 2, 2, 1], padding="SAME"),
            "mirror_reflect": raw.MirrorPadGrad(input=g, paddings=[[0, 0], [2, 1], [0, 3], [1, 0]],
                                                mode="REFLECT"),
            "mirror_symmetric": raw.MirrorPadGrad(input=g, paddings=[[0, 1], [1, 2], [3, 0], [0, 0]],
                                                  mode="SYMMETRIC"),
        }


def test_gradient_ops_match_tensorflow(tmp_path):
    rng = np.random.default_rng(10)
    x, g = (rng.standard_normal((2, 6, 7, 3)).astype(np.float32) for _ in range(2))
    assert_runs_as_tensorflow(GradientOps(), {"x": x, "g": g}, tmp_path, tolerance=1e-5)


# Strings of every length FarmHash and SipHash treat apart (0-3, 4-7, 8-16, 17-32, 33-64, longer
# in 64-byte blocks), multi-byte UTF-8 among them.
WORDS = np.array(["", "a", "ab", "cat", "dogs", "zebra", "pelican", "12345678", "lighthouses!",
                  "x" * 16, "y" * 17, "ünïcödé wörds", "z" * 32, "q" * 33, "the quick brown fox jumps over",
                  "w" * 64, "v" * 65, "long " * 25, "u" * 128, "t" * 129, "ß" * 100])


class StringOps(tf.Module):
    """Hash buckets (FarmHash's fingerprint and keyed SipHash, as Keras's Hashing layer emits
    them), numbers formatted as strings, string equality, and static hash tables of string,
    integer and float values with their defaults, as StringLookup and IntegerLookup emit them."""

    def __init__(self):
        super().__init__()
        self.words = tf.lookup.StaticHashTable(
            tf.lookup.KeyValueTensorInitializer(["cat", "dogs", "zebra", ""], tf.constant([4, 5, 6, 7], tf.int64)), -1)
        self.names = tf.lookup.StaticHashTable(
            tf.lookup.KeyValueTensorInitializer(tf.constant([3, 7, 11], tf.int64), ["three", "seven", "eleven"]),
            "unknown")
        self.weights = tf.lookup.StaticHashTable(
            tf.lookup.KeyValueTensorInitializer(tf.constant([1, 2], tf.int32), tf.constant([0.5, -2.0])), 0.0)

    @tf.function(input_signature=[tf.TensorSpec([None], tf.string), tf.TensorSpec([None], tf.int64),
                                  tf.TensorSpec([None], tf.int32), tf.TensorSpec([None], tf.float32)])
    def __call__(self, words, codes, small, numbers):
        return {
            "fast": tf.strings.to_hash_bucket_fast(words, 2**62 + 1),
            "strong": tf.strings.to_hash_bucket_strong(words, 2**61 - 1, [7, -3]),
            "word_ids": self.words.lookup(words),
            "words_known": self.words.size(),
            "names": self.names.lookup(codes),
            "weights": self.weights.lookup(small),
            "is_cat": tf.equal(words, "cat") | tf.not_equal(words, words[::-1]),
            "codes": tf.strings.as_string(codes),
            "padded": tf.strings.as_string(small, width=5, fill="0"),
            "numbers": tf.strings.as_string(numbers),
            "scientific": tf.strings.as_string(numbers, precision=3, scientific=True),
            "shortest": tf.strings.as_string(numbers, shortest=True),
            "truths": tf.strings.as_string(tf.greater(numbers, 0.0)),
        }


def string_inputs():
    count = len(WORDS)
    return {"words": WORDS, "codes": np.arange(count, dtype=np.int64) - 4,
            "small": (np.arange(count, dtype=np.int32) % 5) * 37 - 60,
            "numbers": np.linspace(-1234.5, 9e6, count).astype(np.float32) * np.float32(1.7)}


def assert_same_outputs(ours, theirs):
    """Every output the same: strings byte for byte, numbers exactly."""
    assert sorted(ours) == sorted(theirs)
    for key, reference in theirs.items():
        if reference.dtype == object:
            assert ours[key].dtype.kind == "S", key  # tfmp writes NumPy bytes
            assert ours[key].tolist() == reference.tolist(), key
        else:
            assert ours[key].dtype == reference.dtype, key
            np.testing.assert_array_equal(ours[key], reference, err_msg=key)


def test_string_and_table_ops_match_tensorflow(tmp_path):
    model = str(tmp_path / "module")
    tf.saved_model.save(StringOps(), model)
    inputs = string_inputs()
    theirs = run_tf2(model, inputs)
    assert_same_outputs(tfmp_run(model, inputs, tmp_path), theirs)
    # NumPy's fixed-width bytes in, as well as its unicode strings.
    utf8 = np.array([word.encode() for word in WORDS])
    assert_same_outputs(tfmp_run(model, {**inputs, "words": utf8}, tmp_path), theirs)


def test_tf1_session_model_with_a_table_runs_and_converts(tmp_path):
    """A TF1 model whose table the legacy init op (tables_initializer) fills."""
    model = str(tmp_path / "tf1")
    graph = tf.Graph()
    with graph.as_default():
        words = tf.compat.v1.placeholder(tf.string, [None], name="words")
        table = tf.lookup.StaticHashTable(
            tf.lookup.KeyValueTensorInitializer(["cat", "dog"], tf.constant([1, 2], tf.int64)), 0)
        embedding = tf.compat.v1.get_variable(
            "embedding", [3, 4], initializer=tf.compat.v1.random_normal_initializer(seed=3))
        y = tf.identity(tf.nn.embedding_lookup(embedding, table.lookup(words)) * 2.0, name="y")
        with tf.compat.v1.Session(graph=graph) as session:
            session.run([tf.compat.v1.global_variables_initializer(), tf.compat.v1.tables_initializer()])
            builder = tf.compat.v1.saved_model.Builder(model)
            builder.add_meta_graph_and_variables(
                session, ["serve"],
                signature_def_map={"serving_default": tf.compat.v1.saved_model.predict_signature_def(
                    {"words": words}, {"y": y})},
                main_op=tf.compat.v1.tables_initializer())
            builder.save()
    inputs = {"words": np.array(["dog", "cat", "emu"])}
    reference = run_tf1(model, inputs)
    np.testing.assert_array_equal(tfmp_run(model, inputs, tmp_path)["y"], reference["y"])
    converted = str(tmp_path / "converted")
    result = subprocess.run([TFMP, "convert", model, converted], capture_output=True, text=True)
    assert result.returncode == 0 and "verified" in result.stdout, result.stdout + result.stderr
    np.testing.assert_allclose(run_tf1(converted, inputs)["y"], reference["y"], rtol=1e-2, atol=1e-3)


class TextOps(tf.Module):
    """TextVectorization's ops: lower-casing, regular expression replacement (its punctuation
    stripping, groups in a rewrite, the first match only), splitting by whitespace and by a
    separator (at most N splits too), and ragged rows padded into a dense tensor (by row ids, and
    by row splits, cut to a given width)."""

    @tf.function(input_signature=[tf.TensorSpec([None], tf.string), tf.TensorSpec([None], tf.int64)])
    def __call__(self, text, splits):
        lower = tf.strings.lower(text)
        stripped = tf.strings.regex_replace(lower, r"[!\"#$%&()\*\+,-\./:;<=>?@\[\\\]^_`{|}~\']", "")
        words = tf.strings.split(stripped)
        pieces = tf.strings.split(text, sep="ab", maxsplit=2)
        ragged = tf.RaggedTensor.from_row_splits(tf.range(splits[-1]), splits)
        return {
            "lower": lower,
            "unicode_lower": tf.strings.lower(text, encoding="utf-8"),
            "stripped": stripped,
            "swapped": tf.strings.regex_replace(text, r"(\w+) (\w+)", r"\2 \1 \\0"),
            "first": tf.strings.regex_replace(text, "a", "A", replace_global=False),
            "words": words.to_tensor(default_value="<pad>"),
            "cut": words.to_tensor(default_value="", shape=[None, 3]),
            "counts": words.row_lengths(),
            "pieces": pieces.to_tensor(),
            "few": tf.strings.split(text, maxsplit=1).to_tensor(),
            "split_rows": ragged.to_tensor(default_value=-1),
        }


def test_text_ops_match_tensorflow(tmp_path):
    model = str(tmp_path / "module")
    tf.saved_model.save(TextOps(), model)
    inputs = {"text": np.array([w.encode() for w in ["The Cat, sat!", "  a  dog  ", "", "ÄBc abab ab", "x",
                                                    "fish swim the cat sat on the mat ab", "tab\tnew\nline"]]),
              "splits": np.array([0, 2, 2, 5, 6], np.int64)}
    assert_same_outputs(tfmp_run(model, inputs, tmp_path), run_tf2(model, inputs))


class RandomOps(tf.Module):
    """Stateless random draws from a seed, as Keras's random layers make them: uniform floats of
    every type, normal floats, bounded integers; sizes that leave a partial last call."""

    @tf.function(input_signature=[tf.TensorSpec([2], tf.int64), tf.TensorSpec([2], tf.int32)])
    def __call__(self, seed, small_seed):
        key, counter = tf.raw_ops.StatelessRandomGetKeyCounter(seed=seed)
        def draw(op, shape, **options):
            return op(shape=shape, key=key, counter=counter, alg=1, **options)
        return {
            "uniform": tf.random.stateless_uniform([3, 7], seed=seed),
            "uniform_small_seed": tf.random.stateless_uniform([5], seed=small_seed),
            "uniform_half": draw(tf.raw_ops.StatelessRandomUniformV2, [9], dtype=tf.float16),
            "uniform_bfloat16": tf.cast(draw(tf.raw_ops.StatelessRandomUniformV2, [6], dtype=tf.bfloat16), tf.float32),
            "uniform_double": draw(tf.raw_ops.StatelessRandomUniformV2, [5], dtype=tf.float64),
            "scaled": tf.random.stateless_uniform([2, 2], seed=seed, minval=-3.0, maxval=5.0),
            "normal": tf.random.stateless_normal([11], seed=seed),
            "normal_double": draw(tf.raw_ops.StatelessRandomNormalV2, [3], dtype=tf.float64),
            "integers": tf.random.stateless_uniform([13], seed=seed, minval=-5, maxval=1000, dtype=tf.int32),
            "wide_integers": tf.random.stateless_uniform([5], seed=seed, minval=-2**40, maxval=2**50, dtype=tf.int64),
        }


def test_random_ops_match_tensorflow(tmp_path):
    model = str(tmp_path / "module")
    tf.saved_model.save(RandomOps(), model)
    inputs = {"seed": np.array([42, -7], np.int64), "small_seed": np.array([-3, 2**31 - 1], np.int32)}
    ours, theirs = tfmp_run(model, inputs, tmp_path), run_tf2(model, inputs)
    assert sorted(ours) == sorted(theirs)
    for key, reference in theirs.items():
        assert ours[key].dtype == reference.dtype and ours[key].shape == reference.shape, key
        if key.startswith("normal"):  # sin, cos and log may differ in their last bit
            np.testing.assert_allclose(ours[key], reference, rtol=1e-6, atol=1e-6, err_msg=key)
        else:
            np.testing.assert_array_equal(ours[key], reference, err_msg=key)


class StatefulOps(tf.Module):
    """Variable writes inside the served function (as a Keras random layer advances its seed
    state): reads before a write see the old value, reads after it the new one."""

    def __init__(self):
        super().__init__()
        self.count = tf.Variable(1.0)
        self.steps = tf.Variable(tf.constant([3, 4], tf.int64))

    @tf.function(input_signature=[tf.TensorSpec([None], tf.float32)])
    def __call__(self, x):
        before = x * self.count
        self.count.assign_add(1.0)
        after = x * self.count
        self.steps.assign_sub(tf.constant([1, 1], tf.int64))
        self.count.assign(self.count * 3.0)
        return {"before": before, "after": after, "tripled": self.count + 0.0, "steps": self.steps.read_value() * 2}


def test_variable_writes_match_tensorflow(tmp_path):
    assert_runs_as_tensorflow(StatefulOps(), {"x": np.array([1.5, -2.0, 4.0], np.float32)}, tmp_path)


class TransformOps(tf.Module):
    """Projective image transforms as Keras's RandomRotation, RandomZoom, RandomTranslation and
    RandomShear emit them: every fill mode, both interpolations, per-image transforms, another
    output size."""

    @tf.function(input_signature=[tf.TensorSpec([2, 5, 6, 2], tf.float32), tf.TensorSpec([2, 8], tf.float32)])
    def __call__(self, images, transforms):
        outputs = {}
        for mode in ["CONSTANT", "REFLECT", "WRAP", "NEAREST"]:
            for interpolation in ["NEAREST", "BILINEAR"]:
                outputs[f"{mode}_{interpolation}".lower()] = tf.raw_ops.ImageProjectiveTransformV3(
                    images=images, transforms=transforms, output_shape=[5, 6], fill_value=-1.5,
                    interpolation=interpolation, fill_mode=mode)
        outputs["resized"] = tf.raw_ops.ImageProjectiveTransformV3(
            images=images, transforms=transforms[:1], output_shape=[3, 8], fill_value=0.0,
            interpolation="BILINEAR", fill_mode="REFLECT")
        return outputs


def test_projective_transforms_match_tensorflow(tmp_path):
    angle = 0.7
    rotation = [np.cos(angle), -np.sin(angle), 2.5, np.sin(angle), np.cos(angle), -1.2, 0.0, 0.0]
    projective = [1.3, 0.2, -4.0, -0.1, 0.8, 7.5, 0.02, -0.03]
    inputs = {"images": np.random.default_rng(5).standard_normal((2, 5, 6, 2)).astype(np.float32),
              "transforms": np.array([rotation, projective], np.float32)}
    assert_runs_as_tensorflow(TransformOps(), inputs, tmp_path, tolerance=1e-5)


class PixelOps(tf.Module):
    """Keras's color and posterization augmentations: RGB to HSV and back, and integer bit
    operations on pixels (shifts past the width clamped, as TensorFlow's)."""

    @tf.function(input_signature=[tf.TensorSpec([4, 3], tf.float32), tf.TensorSpec([6], tf.int32),
                                  tf.TensorSpec([6], tf.uint8), tf.TensorSpec([6], tf.int64)])
    def __call__(self, pixels, codes, bytes_, wide):
        hsv = tf.image.rgb_to_hsv(pixels)
        shifts = tf.constant([0, 1, 3, 7, 8, 40], tf.int32)
        return {
            "hsv": hsv, "rgb": tf.image.hsv_to_rgb(hsv), "shifted_hue": tf.image.hsv_to_rgb(hsv + [0.3, 0.0, 0.0]),
            "and": tf.bitwise.bitwise_and(codes, 0b1100), "or": tf.bitwise.bitwise_or(codes, 5),
            "xor": tf.bitwise.bitwise_xor(codes, -1),
            "left": tf.bitwise.left_shift(codes, shifts), "right": tf.bitwise.right_shift(codes, shifts),
            "byte_left": tf.bitwise.left_shift(bytes_, tf.cast(shifts % 9, tf.uint8)),
            "byte_right": tf.bitwise.right_shift(bytes_, tf.constant([4, 4, 4, 2, 2, 1], tf.uint8)),
            "wide_right": tf.bitwise.right_shift(wide, tf.cast(shifts, tf.int64)),
        }


def test_pixel_ops_match_tensorflow(tmp_path):
    inputs = {"pixels": np.array([[0.2, 0.5, 0.9], [1.0, 0.0, 0.0], [0.3, 0.3, 0.3], [0.0, 0.0, 0.0]], np.float32),
              "codes": np.array([0, 7, -12, 255, 1 << 20, -1], np.int32),
              "bytes_": np.array([0, 1, 15, 128, 200, 255], np.uint8),
              "wide": np.array([1 << 40, -(1 << 35), 3, -3, 7, 1 << 62], np.int64)}
    assert_runs_as_tensorflow(PixelOps(), inputs, tmp_path, tolerance=1e-6)


AUGMENTATIONS = ["RandomFlip()", "RandomRotation(0.2)", "RandomZoom(0.2)", "RandomTranslation(0.1, 0.1)",
                 "RandomContrast(0.2)", "RandomBrightness(0.2, value_range=(0, 1))", "RandomCrop(6, 6)",
                 "RandomGrayscale()", "RandomHue(0.2, (0, 1))", "RandomSaturation(0.2)", "RandomSharpness(0.2)",
                 "RandomColorJitter(value_range=(0, 1), brightness_factor=0.2)", "RandomShear(0.2)",
                 "RandomErasing()", "RandomPosterization(value_range=(0, 255), factor=(1, 4))",
                 "Solarization(0.5, value_range=(0, 1))", "RandomInvert(value_range=(0, 1))",
                 "RandomElasticTransform(value_range=(0, 1))", "RandomGaussianBlur(value_range=(0, 1))",
                 "RandomPerspective()", "RandAugment(value_range=(0, 1))"]


def test_keras_augmentation_layers_run_as_tensorflow_serves_them(tmp_path):
    """Each image augmentation layer in front of a convolution, exported: its random draws from
    the seed state (advanced as the call runs) and its image ops give what TensorFlow serves."""
    import keras
    images = np.random.default_rng(0).uniform(0, 1, (2, 8, 8, 3)).astype(np.float32)
    for index, layer in enumerate(AUGMENTATIONS):
        keras.utils.set_random_seed(index)
        inputs = keras.Input((8, 8, 3), name="images")
        model = keras.Model(inputs, keras.layers.Conv2D(2, 3)(eval("keras.layers." + layer)(inputs)))
        path = str(tmp_path / f"augmented_{index}")
        model.export(path, verbose=False)
        ours, theirs = tfmp_run(path, {"images": images}, tmp_path), run_tf2(path, {"images": images})
        for key, reference in theirs.items():
            np.testing.assert_allclose(ours[key], reference, rtol=1e-5, atol=1e-5, err_msg=layer)


class SolveOps(tf.Module):
    """Batched linear solves, plain and adjoint, with pivoting needed (a zero on the diagonal)."""

    @tf.function(input_signature=[tf.TensorSpec([2, 3, 3], tf.float32), tf.TensorSpec([2, 3, 2], tf.float32)])
    def __call__(self, matrices, rhs):
        return {"solved": tf.linalg.solve(matrices, rhs), "adjoint": tf.linalg.solve(matrices, rhs, adjoint=True)}


def test_linear_solves_match_tensorflow(tmp_path):
    matrices = np.array([[[0.0, 2.0, 1.0], [1.0, 1.0, 0.0], [3.0, 0.0, 1.0]],
                         np.random.default_rng(4).standard_normal((3, 3))], np.float32)
    rhs = np.random.default_rng(5).standard_normal((2, 3, 2)).astype(np.float32)
    assert_runs_as_tensorflow(SolveOps(), {"matrices": matrices, "rhs": rhs}, tmp_path, tolerance=1e-5)


class Float64Unary(tf.Module):
    """Unary math on float64, computed in double precision (RandAugment rounds float64 factors)."""

    @tf.function(input_signature=[tf.TensorSpec([7], tf.float64)])
    def __call__(self, x):
        positive = tf.abs(x) + 0.5
        unit = tf.tanh(x)
        return {
            "round": tf.round(x * 3.0), "floor": tf.floor(x), "ceil": tf.math.ceil(x), "sign": tf.sign(x),
            "exp": tf.exp(x), "log": tf.math.log(positive), "sqrt": tf.sqrt(positive), "rsqrt": tf.math.rsqrt(positive),
            "sigmoid": tf.sigmoid(x), "softplus": tf.nn.softplus(x), "elu": tf.nn.elu(x), "selu": tf.nn.selu(x),
            "erf": tf.math.erf(x), "erfc": tf.math.erfc(x), "log1p": tf.math.log1p(positive), "expm1": tf.math.expm1(x),
            "trig": tf.sin(x) + tf.cos(x) + tf.tan(unit) + tf.atan(x) + tf.asin(unit) + tf.acos(unit),
            "hyperbolic": tf.sinh(x) + tf.cosh(x) + tf.asinh(x) + tf.acosh(positive + 1.0) + tf.atanh(unit * 0.5),
            "reciprocal": tf.math.reciprocal(positive), "softsign": tf.nn.softsign(x), "relu6": tf.nn.relu6(x * 4.0),
        }


def test_float64_unary_math_matches_tensorflow(tmp_path):
    inputs = {"x": np.array([-2.5, -0.5000000001, -1e-8, 0.0, 0.5, 1.5, 2.25], np.float64)}
    assert_runs_as_tensorflow(Float64Unary(), inputs, tmp_path, tolerance=1e-13)
