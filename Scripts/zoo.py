#!/usr/bin/env python3
"""The model zoo: real architectures from the libraries people build models with, made with fixed
seeds into a cache folder (bench-work/zoo/ unless given), each a SavedModel or a frozen graph with
inputs to run it on.

Usage: .venv/bin/python Scripts/zoo.py [--out FOLDER] [--only NAME ...] [--list] [--fast]
       .venv/bin/python Scripts/zoo.py --table TFMP [--only NAME ...]   (the README's table)
       .venv/bin/python Scripts/zoo.py --fidelity TFMP [--batches N] [--only NAME ...]
           (each Keras-made model's error against Keras's own mixed precision, over N batches)
       .venv/bin/python Scripts/zoo.py --gradients HELPER [--only NAME ...]
           (tfmp's gradients, run by .build/debug/tfmp-interop-helper, against GradientTape's)

Each model NAME gives FOLDER/NAME/ (a SavedModel), or FOLDER/NAME.pb (a frozen GraphDef) with
FOLDER/NAME.fetches (the tensor names it fetches, one per line), and FOLDER/NAME.inputs.npz (one
array per signature input, or per placeholder). Keras-made models also give
FOLDER/NAME.keras. A model already in the folder is kept unless it was made under another VERSION
(bump it when a model changes) or TensorFlow. Batch normalization statistics are set from data first (a few training-mode passes), as a
trained model's would be: with the initial 0/1 statistics activations vanish in deep nets and
every comparison passes trivially.

Tests/Interop/test_zoo.py runs every model through every stage; --fast names the subset the
README's test command runs.
"""
import argparse
import os
import shutil
import sys

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
import numpy as np
import tensorflow as tf

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
# Bump when a model changes: a model in the folder made under another version is made again.
VERSION = "2"
STAMP = f"zoo {VERSION}, tensorflow {tf.__version__}"
MODELS = {}
FAST = []


def model(name, fast=False):
    def register(function):
        MODELS[name] = function
        if fast:
            FAST.append(name)
        return function
    return register


def seeded(seed):
    import keras
    keras.utils.set_random_seed(seed)
    return np.random.default_rng(seed)


def calibrate(net, batches):
    """Training-mode passes so that batch normalization statistics come from data."""
    for batch in batches:
        net(batch, training=True)


def export_keras(net, folder, name, inputs):
    net.export(os.path.join(folder, name), format="tf_saved_model", verbose=False)
    net.save(os.path.join(folder, name + ".keras"))
    return inputs


def image_net(constructor, size, seed, **options):
    rng = seeded(seed)
    # Logits, not probabilities: a softmax over random-weight features is nearly uniform, and
    # every comparison of it passes trivially.
    net = constructor(weights=None, input_shape=(size, size, 3), classes=10,
                      classifier_activation=None, **options)
    images = lambda n: rng.uniform(0, 255, (n, size, size, 3)).astype(np.float32)
    calibrate(net, [images(8) for _ in range(3)])
    return net, {"inputs": images(2)}


def keras_applications(name, constructor, size, seed, fast=False, **options):
    @model(name, fast)
    def make(folder):
        net, inputs = image_net(constructor, size, seed, **options)
        # Keras names the signature input after the Input layer.
        key = net.inputs[0].name
        return export_keras(net, folder, name, {key: inputs["inputs"]})


def register_applications():
    import keras
    apps = keras.applications
    keras_applications("mobilenet_v3_small", apps.MobileNetV3Small, 64, 1, fast=True,
                       include_preprocessing=True)
    keras_applications("efficientnet_b0", apps.EfficientNetB0, 64, 2)
    keras_applications("resnet50", apps.ResNet50, 64, 3)
    keras_applications("densenet121", apps.DenseNet121, 64, 4)
    keras_applications("inception_v3", apps.InceptionV3, 96, 5)
    keras_applications("convnext_tiny", apps.ConvNeXtTiny, 64, 6)
    keras_applications("mobilenet_v2", apps.MobileNetV2, 64, 7)
    keras_applications("xception", apps.Xception, 71, 8)
    keras_applications("resnet50_v2", apps.ResNet50V2, 64, 9)
    keras_applications("efficientnet_v2_b0", apps.EfficientNetV2B0, 64, 10)
    keras_applications("vgg16", apps.VGG16, 32, 17)
    keras_applications("mobilenet", apps.MobileNet, 64, 18)


def token_inputs(rng, batch, length, vocabulary):
    ids = rng.integers(1, vocabulary, (batch, length)).astype(np.int32)
    mask = np.ones((batch, length), np.int32)
    mask[:, length - 2:] = 0
    return ids, mask


def hub_backbone(name, build, seed, fast=False):
    @model(name, fast)
    def make(folder):
        rng = seeded(seed)
        net, inputs = build(rng)
        return export_keras(net, folder, name, inputs)


def register_hub():
    import keras_hub

    def bert(rng):
        net = keras_hub.models.BertBackbone(
            vocabulary_size=200, num_layers=2, num_heads=2, hidden_dim=32, intermediate_dim=64,
            max_sequence_length=16)
        ids, mask = token_inputs(rng, 2, 12, 200)
        return net, {"token_ids": ids, "segment_ids": np.zeros_like(ids), "padding_mask": mask}

    def gpt2(rng):
        net = keras_hub.models.GPT2Backbone(
            vocabulary_size=200, num_layers=2, num_heads=2, hidden_dim=32, intermediate_dim=64,
            max_sequence_length=16)
        ids, mask = token_inputs(rng, 2, 12, 200)
        return net, {"token_ids": ids, "padding_mask": mask}

    def gemma(rng):
        net = keras_hub.models.GemmaBackbone(
            vocabulary_size=200, num_layers=2, num_query_heads=4, num_key_value_heads=1,
            hidden_dim=32, intermediate_dim=64, head_dim=8)
        ids, mask = token_inputs(rng, 2, 12, 200)
        return net, {"token_ids": ids, "padding_mask": mask}

    def llama(rng):
        net = keras_hub.models.LlamaBackbone(
            vocabulary_size=200, num_layers=2, num_query_heads=4, num_key_value_heads=2,
            hidden_dim=32, intermediate_dim=64)
        ids, mask = token_inputs(rng, 2, 12, 200)
        return net, {"token_ids": ids, "padding_mask": mask}

    def vit(rng):
        net = keras_hub.models.ViTBackbone(
            image_shape=(32, 32, 3), patch_size=8, num_layers=2, num_heads=2, hidden_dim=32,
            mlp_dim=64)
        return net, {"images": rng.uniform(0, 1, (2, 32, 32, 3)).astype(np.float32)}

    def bart(rng):
        net = keras_hub.models.BartBackbone(
            vocabulary_size=200, num_layers=2, num_heads=2, hidden_dim=32, intermediate_dim=64,
            max_sequence_length=16)
        ids, mask = token_inputs(rng, 2, 12, 200)
        return net, {"encoder_token_ids": ids, "encoder_padding_mask": mask,
                     "decoder_token_ids": ids[:, :8], "decoder_padding_mask": mask[:, :8]}

    def decoder(cls, **options):
        def build(rng):
            net = cls(vocabulary_size=200, num_layers=2, hidden_dim=32, intermediate_dim=64, **options)
            ids, mask = token_inputs(rng, 2, 12, 200)
            return net, {"token_ids": ids, "padding_mask": mask}
        return build

    def encoder(cls, **options):
        def build(rng):
            net = cls(vocabulary_size=200, num_layers=2, num_heads=2, hidden_dim=32, intermediate_dim=64,
                      max_sequence_length=16, **options)
            ids, mask = token_inputs(rng, 2, 12, 200)
            return net, {"token_ids": ids, "padding_mask": mask}
        return build

    def t5(rng):
        net = keras_hub.models.T5Backbone(
            vocabulary_size=200, num_layers=2, num_heads=2, hidden_dim=32, intermediate_dim=64,
            key_value_dim=16)
        ids, mask = token_inputs(rng, 2, 12, 200)
        return net, {"encoder_token_ids": ids, "encoder_padding_mask": mask,
                     "decoder_token_ids": ids[:, :8], "decoder_padding_mask": mask[:, :8]}

    def whisper(rng):
        net = keras_hub.models.WhisperBackbone(
            vocabulary_size=200, num_layers=2, num_heads=2, hidden_dim=32, intermediate_dim=64,
            num_mels=16, max_encoder_sequence_length=64, max_decoder_sequence_length=16)
        ids, mask = token_inputs(rng, 2, 8, 200)
        features = rng.standard_normal((2, 64, 16)).astype(np.float32)
        return net, {"encoder_features": features, "decoder_token_ids": ids, "decoder_padding_mask": mask}

    def mixtral(rng):
        # A mixture of experts: a router's top-2 experts per token (TopKV2, OneHot).
        net = keras_hub.models.MixtralBackbone(
            vocabulary_size=200, num_layers=2, num_query_heads=4, hidden_dim=32, intermediate_dim=64,
            num_key_value_heads=2, num_experts=4, top_k=2)
        ids, mask = token_inputs(rng, 2, 12, 200)
        return net, {"token_ids": ids, "padding_mask": mask}

    def swin(rng):
        # Shifted-window attention (Roll, and slice updates for the attention mask).
        net = keras_hub.models.SwinTransformerBackbone(
            image_shape=(32, 32, 3), embed_dim=16, depths=[2, 2], num_heads=[2, 2], window_size=4,
            patch_size=2)
        return net, {net.inputs[0].name: rng.uniform(0, 1, (2, 32, 32, 3)).astype(np.float32)}

    def xlnet(rng):
        net = keras_hub.models.XLNetBackbone(
            vocabulary_size=200, num_layers=2, num_heads=2, hidden_dim=32, intermediate_dim=64)
        ids, mask = token_inputs(rng, 2, 12, 200)
        return net, {"token_ids": ids, "segment_ids": np.zeros_like(ids), "padding_mask": mask}

    hub_backbone("t5_tiny", t5, 30)
    hub_backbone("whisper_tiny", whisper, 31)
    hub_backbone("mixtral_tiny", mixtral, 32, fast=True)
    hub_backbone("swin_tiny", swin, 33)
    hub_backbone("xlnet_tiny", xlnet, 34)
    hub_backbone("deberta_v3_tiny", encoder(keras_hub.models.DebertaV3Backbone, bucket_size=8), 35)
    hub_backbone("mistral_tiny", decoder(keras_hub.models.MistralBackbone, num_query_heads=4,
                                         num_key_value_heads=2), 17)
    hub_backbone("qwen2_tiny", decoder(keras_hub.models.Qwen2Backbone, num_query_heads=4,
                                       num_key_value_heads=2), 18)
    hub_backbone("phi3_tiny", decoder(keras_hub.models.Phi3Backbone, num_query_heads=4,
                                      num_key_value_heads=2), 19)
    hub_backbone("distilbert_tiny", encoder(keras_hub.models.DistilBertBackbone), 20)
    hub_backbone("roberta_tiny", encoder(keras_hub.models.RobertaBackbone), 24)
    hub_backbone("bert_tiny", bert, 11, fast=True)
    hub_backbone("gpt2_tiny", gpt2, 12)
    hub_backbone("gemma_tiny", gemma, 13, fast=True)
    hub_backbone("llama_tiny", llama, 14)
    hub_backbone("vit_tiny", vit, 15)
    hub_backbone("bart_tiny", bart, 16)


def register_recurrent():
    import keras

    def recurrent(name, layer, seed, fast=False, masking=False):
        @model(name, fast)
        def make(folder):
            rng = seeded(seed)
            inputs = keras.Input((10, 6), name="sequence")
            x = keras.layers.Masking(0.0)(inputs) if masking else inputs
            x = layer()(x)
            outputs = keras.layers.Dense(3, activation="softmax", name="probabilities")(x)
            net = keras.Model(inputs, outputs)
            sequence = rng.standard_normal((2, 10, 6)).astype(np.float32)
            if masking:
                sequence[1, 7:] = 0.0
            return export_keras(net, folder, name, {"sequence": sequence})

    recurrent("lstm", lambda: keras.layers.LSTM(16), 21, fast=True)
    recurrent("gru", lambda: keras.layers.GRU(16), 22)
    recurrent("bidirectional_masked", lambda: keras.layers.Bidirectional(keras.layers.LSTM(8)), 23,
              masking=True)
    recurrent("simple_rnn", lambda: keras.layers.SimpleRNN(16), 25)
    recurrent("stacked_gru", lambda: keras.Sequential(
        [keras.layers.GRU(12, return_sequences=True), keras.layers.GRU(8, reset_after=False)]), 26)


def register_modules():
    class CustomMath(tf.Module):
        def __init__(self):
            self.w = tf.Variable(tf.random.stateless_normal([8, 8], seed=[1, 1]))
            self.huge = tf.Variable(tf.fill([8], 7.0e4))

        @tf.function(input_signature=[tf.TensorSpec([None, 8], tf.float32)])
        def __call__(self, x):
            h = tf.matmul(x, self.w)
            h = tf.cond(tf.reduce_sum(h) > 0, lambda: tf.nn.gelu(h), lambda: tf.tanh(h))
            steps = tf.constant(0)
            _, h = tf.while_loop(lambda i, v: i < 3, lambda i, v: (i + 1, tf.matmul(v, self.w) * 0.5),
                                 [steps, h])
            scaled = h * self.huge * 1e-5
            return {"y": tf.reduce_logsumexp(scaled, axis=-1), "z": tf.math.cumsum(tf.sin(h), axis=1)}

    @model("custom_module", fast=True)
    def make(folder):
        tf.saved_model.save(CustomMath(), os.path.join(folder, "custom_module"))
        return {"x": np.random.default_rng(31).standard_normal((3, 8)).astype(np.float32)}

    class DetectionHead(tf.Module):
        """A detector's head and post-processing as hand-written TF code has it: box decoding
        against anchors, per-class sigmoid scores, the top detections per image gathered by
        index, per-class score totals, and overlaps with the best box."""

        def __init__(self, rng):
            self.w = tf.Variable(rng.normal(0, 0.2, (16, 4 + 5)).astype(np.float32))
            self.anchors = tf.constant(np.sort(rng.uniform(0, 1, (12, 4)), axis=-1).astype(np.float32))

        @tf.function(input_signature=[tf.TensorSpec([None, 12, 16], tf.float32)])
        def __call__(self, features):
            head = tf.einsum("bnf,fo->bno", features, self.w)
            deltas, logits = tf.split(head, [4, 5], axis=-1)
            centers = (self.anchors[:, :2] + self.anchors[:, 2:]) / 2 + deltas[..., :2] * 0.1
            sizes = (self.anchors[:, 2:] - self.anchors[:, :2]) * tf.exp(tf.clip_by_value(deltas[..., 2:], -4.0, 4.0))
            boxes = tf.concat([centers - sizes / 2, centers + sizes / 2], axis=-1)
            scores = tf.sigmoid(logits)
            best = tf.reduce_max(scores, axis=-1)
            classes = tf.argmax(scores, axis=-1, output_type=tf.int32)
            top, order = tf.math.top_k(best, k=5)
            batch = tf.broadcast_to(tf.range(tf.shape(order)[0])[:, None], tf.shape(order))
            picked = tf.gather_nd(boxes, tf.stack([batch, order], axis=-1))
            picked_classes = tf.gather_nd(classes, tf.stack([batch, order], axis=-1))
            totals = tf.math.unsorted_segment_sum(
                tf.reshape(best, [-1]), tf.reshape(classes, [-1]), num_segments=5)
            lower = tf.maximum(picked[:, :1, :2], picked[..., :2])
            upper = tf.minimum(picked[:, :1, 2:], picked[..., 2:])
            overlap = tf.reduce_prod(tf.nn.relu(upper - lower), axis=-1)
            area = tf.reduce_prod(picked[..., 2:] - picked[..., :2], axis=-1)
            return {
                "confident": tf.boolean_mask(best, best > 0.5),
                "boxes": picked, "scores": top,
                "classes": tf.one_hot(picked_classes, 5, dtype=tf.float32) * top[..., None],
                "class_totals": totals, "weakest": tf.argmin(best, axis=-1),
                "overlaps": tf.math.divide_no_nan(overlap, area + area[:, :1] - overlap),
            }

    @model("detection_head", fast=True)
    def make(folder):
        rng = np.random.default_rng(37)
        tf.saved_model.save(DetectionHead(rng), os.path.join(folder, "detection_head"))
        return {"features": rng.standard_normal((2, 12, 16)).astype(np.float32)}

    class SignalFeatures(tf.Module):
        """Hand-written signal features: reflect-padded frames, phases and magnitudes of two
        filtered signals, running decays, a small network with assorted activations, and a
        causal summary per valid length."""

        def __init__(self, rng):
            self.filters = tf.constant(rng.normal(0, 0.5, (8, 2)).astype(np.float32))
            self.w1 = tf.Variable(rng.normal(0, 0.3, (6, 16)).astype(np.float32))
            self.w2 = tf.Variable(rng.normal(0, 0.3, (16, 4)).astype(np.float32))

        @tf.function(input_signature=[tf.TensorSpec([None, 64], tf.float32), tf.TensorSpec([None], tf.int32)])
        def __call__(self, signal, lengths):
            padded = tf.pad(signal, [[0, 0], [4, 4]], mode="REFLECT")
            frames = tf.reshape(padded[:, :64], [-1, 8, 8])
            filtered = tf.einsum("bft,tc->bfc", frames, self.filters)
            real, imaginary = tf.unstack(filtered, axis=-1)
            phase = tf.atan2(imaginary, real)
            magnitude = tf.math.log1p(tf.sqrt(real * real + imaginary * imaginary))
            decay = tf.math.cumprod(tf.fill(tf.shape(magnitude), 0.9), axis=1, exclusive=True)
            energy = tf.math.cumsum(magnitude * decay, axis=1, reverse=True)
            features = tf.concat([
                tf.stack([magnitude, tf.sin(phase), tf.cos(phase), tf.atan(energy)], axis=-1),
                tf.stack([tf.math.floormod(phase, 1.0), tf.round(energy * 4.0) / 4.0], axis=-1),
            ], axis=-1)
            hidden = tf.matmul(features, self.w1)
            hidden = tf.add_n([tf.nn.elu(hidden), tf.nn.selu(hidden), tf.nn.softplus(hidden),
                               tf.nn.softsign(hidden), tf.nn.leaky_relu(hidden, 0.1)])
            logits = tf.matmul(hidden, self.w2)
            causal = tf.linalg.band_part(tf.ones([8, 8]), -1, 0)
            steps = tf.minimum(tf.maximum(lengths // 8, 1), 8)
            valid = tf.sequence_mask(steps, 8, dtype=tf.float32)
            summary = tf.einsum("ij,bjc->bic", causal, logits * valid[..., None])
            reversed_ = tf.reverse_sequence(summary, tf.cast(steps, tf.int64), seq_axis=1, batch_axis=0)
            return {
                "log_probabilities": tf.nn.log_softmax(reversed_, axis=-1),
                "smallest": tf.reduce_min(logits, axis=1),
                "flagged": tf.cast(tf.logical_or(tf.math.is_nan(phase), tf.math.is_inf(energy)), tf.float32)
                + tf.math.erf(tf.math.expm1(-tf.abs(real))),
                "edges": tf.reverse(tf.pad(magnitude, [[0, 0], [1, 1]], constant_values=-1.0), axis=[1]),
            }

    class Geometry(tf.Module):
        """Hand-written geometry on learned embeddings: great-circle (haversine) distances
        between points on a sphere, angles between vectors, distances in the Poincaré ball
        (hyperbolic embeddings, as recommenders and taxonomies use them), and a map back from
        the ball through the hyperbolic functions."""

        def __init__(self, rng):
            self.w = tf.Variable(rng.normal(0, 0.3, (6, 6)).astype(np.float32))

        @tf.function(input_signature=[tf.TensorSpec([None, 6], tf.float32), tf.TensorSpec([None, 6], tf.float32)])
        def __call__(self, a, b):
            a, b = tf.matmul(a, self.w), tf.matmul(b, self.w)
            latitude, longitude = tf.tanh(a[:, 0]) * 1.5, tf.tanh(a[:, 1]) * 3.0
            latitude2, longitude2 = tf.tanh(b[:, 0]) * 1.5, tf.tanh(b[:, 1]) * 3.0
            h = tf.sin((latitude2 - latitude) / 2) ** 2 + tf.cos(latitude) * tf.cos(latitude2) * tf.sin(
                (longitude2 - longitude) / 2) ** 2
            great_circle = 2 * tf.asin(tf.sqrt(tf.clip_by_value(h, 0.0, 1.0)))
            cosine = tf.reduce_sum(tf.math.l2_normalize(a, -1) * tf.math.l2_normalize(b, -1), axis=-1)
            angle = tf.acos(tf.clip_by_value(cosine, -0.999, 0.999))
            # Points inside the unit ball, via tanh of their norms.
            def into_ball(v):
                norm = tf.norm(v, axis=-1, keepdims=True)
                return tf.tanh(norm) * v / (norm + 1e-6) * 0.9
            u, v = into_ball(a), into_ball(b)
            squared = tf.reduce_sum((u - v) ** 2, -1)
            denominator = (1 - tf.reduce_sum(u * u, -1)) * (1 - tf.reduce_sum(v * v, -1))
            hyperbolic = tf.acosh(1 + 2 * squared / denominator)
            radius = tf.norm(u, axis=-1)
            tangent = tf.atanh(radius) / (radius + 1e-6)
            return {
                "great_circle": great_circle, "angle": angle, "hyperbolic": hyperbolic,
                "tangent": tangent,
                "curvature": tf.sinh(hyperbolic * 0.5) / tf.cosh(hyperbolic * 0.5) + tf.asinh(squared)
                + tf.tan(angle * 0.25),
            }

    @model("geometry_module")
    def make(folder):
        rng = np.random.default_rng(43)
        tf.saved_model.save(Geometry(rng), os.path.join(folder, "geometry_module"))
        return {"a": rng.standard_normal((4, 6)).astype(np.float32),
                "b": rng.standard_normal((4, 6)).astype(np.float32)}

    @model("signal_features")
    def make(folder):
        rng = np.random.default_rng(38)
        tf.saved_model.save(SignalFeatures(rng), os.path.join(folder, "signal_features"))
        return {"signal": rng.standard_normal((3, 64)).astype(np.float32),
                "lengths": np.array([64, 20, 5], np.int32)}


def export_calibrated_on_images(net, rng, folder, name):
    """Exports a net on 32x32 RGB images (input "image") with its batch normalization
    statistics set from such images."""
    images = lambda n: rng.uniform(0, 255, (n, 32, 32, 3)).astype(np.float32)
    calibrate(net, [images(8) for _ in range(3)])
    return export_keras(net, folder, name, {"image": images(2)})


def register_dense_prediction():
    import keras

    @model("unet_small")
    def make(folder):
        # A segmentation net: transposed convolutions, bilinear upsampling and resizing, skip
        # connections.
        rng = seeded(36)
        layers = keras.layers
        inputs = keras.Input((32, 32, 3), name="image")
        x = layers.Rescaling(1 / 255)(inputs)
        down1 = layers.BatchNormalization()(layers.Conv2D(8, 3, padding="same", activation="relu")(x))
        down2 = layers.SeparableConv2D(16, 3, padding="same", activation="relu")(layers.MaxPooling2D()(down1))
        bottom = layers.Conv2D(32, 3, padding="same", activation="relu")(layers.MaxPooling2D()(down2))
        up2 = layers.Concatenate()([layers.Conv2DTranspose(16, 3, strides=2, padding="same")(bottom), down2])
        up1 = layers.UpSampling2D(interpolation="bilinear")(layers.Conv2D(8, 3, padding="same", activation="relu")(up2))
        logits = layers.Conv2D(4, 1)(layers.Concatenate()([up1, down1]))
        net = keras.Model(inputs, layers.Resizing(48, 48)(logits))
        return export_calibrated_on_images(net, rng, folder, "unet_small")

    @model("deeplab_aspp")
    def make(folder):
        # Atrous spatial pyramid pooling: parallel dilated convolutions (SpaceToBatchND,
        # BatchToSpaceND), image pooling, bilinear upsampling back to the input.
        rng = seeded(39)
        layers = keras.layers
        inputs = keras.Input((32, 32, 3), name="image")
        x = layers.Conv2D(16, 3, strides=2, padding="same", activation="relu")(layers.Rescaling(1 / 127.5, -1)(inputs))
        x = layers.BatchNormalization()(x)
        branches = [layers.Conv2D(8, 1, activation="relu")(x)] + [
            layers.Conv2D(8, 3, padding="same", dilation_rate=rate, activation="relu")(x) for rate in (2, 4)]
        pooled = layers.GlobalAveragePooling2D(keepdims=True)(x)
        branches.append(layers.UpSampling2D(16, interpolation="bilinear")(layers.Conv2D(8, 1)(pooled)))
        x = layers.Conv2D(16, 1, activation="relu")(layers.Concatenate()(branches))
        logits = layers.UpSampling2D(2, interpolation="bilinear")(layers.Conv2D(3, 1)(x))
        return export_calibrated_on_images(keras.Model(inputs, logits), rng, folder, "deeplab_aspp")

    @model("video_classifier")
    def make(folder):
        # 3-D convolutions over frames, 3-D max and average pooling.
        rng = seeded(40)
        layers = keras.layers
        inputs = keras.Input((6, 16, 16, 3), name="frames")
        x = layers.Conv3D(8, 3, padding="same", activation="relu")(inputs)
        x = layers.BatchNormalization()(x)
        x = layers.MaxPooling3D((1, 2, 2))(x)
        x = layers.Conv3D(16, (3, 3, 3), padding="same", activation="relu")(x)
        x = layers.AveragePooling3D(2, padding="same")(x)
        outputs = layers.Dense(5)(layers.GlobalAveragePooling3D()(x))
        net = keras.Model(inputs, outputs)
        clips = lambda n: rng.standard_normal((n, 6, 16, 16, 3)).astype(np.float32)
        calibrate(net, [clips(4) for _ in range(2)])
        return export_keras(net, folder, "video_classifier", {"frames": clips(2)})

    @model("volume_segmenter")
    def make(folder):
        # A 3-D U-Net step: down with a strided Conv3D, up with Conv3DTranspose.
        rng = seeded(41)
        layers = keras.layers
        inputs = keras.Input((8, 8, 8, 1), name="volume")
        down = layers.Conv3D(8, 3, padding="same", activation="relu")(inputs)
        bottom = layers.Conv3D(16, 3, strides=2, padding="same", activation="relu")(down)
        up = layers.Conv3DTranspose(8, 3, strides=2, padding="same", activation="relu")(bottom)
        outputs = layers.Conv3D(2, 1)(layers.Concatenate()([up, down]))
        net = keras.Model(inputs, outputs)
        return export_keras(net, folder, "volume_segmenter",
                            {"volume": rng.standard_normal((2, 8, 8, 8, 1)).astype(np.float32)})

    @model("tabular_model")
    def make(folder):
        # Structured data: bucketized numbers one-hot and counted (Bucketize, DenseBincount),
        # embedded, and normalized numbers, into a small network.
        rng = seeded(42)
        layers = keras.layers
        numbers = keras.Input((4,), name="numbers")
        codes = keras.Input((3,), dtype="int32", name="codes")
        buckets = layers.Discretization(bin_boundaries=[-1.0, 0.0, 1.0])(numbers)
        encoded = layers.CategoryEncoding(num_tokens=4, output_mode="multi_hot")(buckets)
        counted = layers.CategoryEncoding(num_tokens=6, output_mode="count")(codes)
        embedded = layers.Flatten()(layers.Embedding(6, 3)(codes))
        scaled = layers.Normalization(mean=[0.5, -0.5, 0.0, 1.0], variance=[1.0, 2.0, 0.5, 4.0])(numbers)
        x = layers.Concatenate()([encoded, counted, embedded, scaled])
        x = layers.Dense(16, activation="relu")(x)
        net = keras.Model([numbers, codes], layers.Dense(1, activation="sigmoid")(x))
        return export_keras(net, folder, "tabular_model", {
            "numbers": rng.standard_normal((4, 4)).astype(np.float32),
            "codes": rng.integers(0, 6, (4, 3)).astype(np.int32)})


    @model("categorical_lookups", fast=True)
    def make(folder):
        # Categorical features as strings and integer codes: a vocabulary lookup of each
        # (StringLookup, IntegerLookup: hash tables filled by the init op), hashed buckets with and
        # without a salt (FarmHash and SipHash), integers hashed through their decimal strings.
        rng = seeded(44)
        layers = keras.layers
        words = keras.Input((3,), dtype="string", name="words")
        codes = keras.Input((2,), dtype="int64", name="codes")
        vocabulary = ["cat", "dog", "fish", "bird"]
        looked_up = layers.StringLookup(vocabulary=vocabulary)(words)
        coded = layers.IntegerLookup(vocabulary=[3, 7, 11, 42, 100])(codes)
        hashed = layers.Hashing(num_bins=16)(words)
        salted = layers.Hashing(num_bins=8, salt=[7, 9])(words)
        code_hashed = layers.Hashing(num_bins=5)(codes)
        embedded = [layers.Flatten()(layers.Embedding(size, 4)(ids)) for size, ids in
                    [(5, looked_up), (6, coded), (16, hashed), (8, salted), (5, code_hashed)]]
        x = layers.Dense(16, activation="relu")(layers.Concatenate()(embedded))
        net = keras.Model([words, codes], layers.Dense(3, activation="softmax")(x))
        known = vocabulary + ["zebra", ""]
        return export_keras(net, folder, "categorical_lookups", {
            "words": np.array(known)[rng.integers(0, len(known), (4, 3))],
            "codes": np.array([3, 7, 11, 42, 100, 5])[rng.integers(0, 6, (4, 2))].astype(np.int64)})


    @model("augmented_cnn", fast=True)
    def make(folder):
        # Data augmentation inside the model, as Keras's image tutorials build it: the random
        # layers draw their factors even at inference (stateless Philox draws from a seed state
        # each call advances), and some change the images then too.
        rng = seeded(46)
        layers = keras.layers
        images = keras.Input((16, 16, 3), name="images")
        x = layers.Rescaling(1 / 255.0)(images)
        for layer in [layers.RandomFlip(), layers.RandomContrast(0.2), layers.RandomBrightness(0.1, value_range=(0, 1)),
                      layers.RandomInvert(value_range=(0, 1)), layers.RandomGaussianBlur(value_range=(0, 1)),
                      layers.Solarization(0.3, value_range=(0, 1)), layers.RandomCrop(12, 12)]:
            x = layer(x)
        x = layers.Conv2D(8, 3, activation="relu")(x)
        x = layers.BatchNormalization()(x)
        x = layers.GlobalAveragePooling2D()(layers.Conv2D(16, 3, strides=2, activation="relu")(x))
        net = keras.Model(images, layers.Dense(4)(x))
        batches = [rng.uniform(0, 255, (4, 16, 16, 3)).astype(np.float32) for _ in range(3)]
        calibrate(net, batches)
        return export_keras(net, folder, "augmented_cnn", {"images": batches[0]})

    @model("text_classifier", fast=True)
    def make(folder):
        # Raw text in: TextVectorization (lower-casing, punctuation stripped by a regular
        # expression, whitespace splitting, a vocabulary table, ragged rows padded to a length),
        # embedded and pooled into a classifier.
        rng = seeded(45)
        layers = keras.layers
        text = keras.Input((1,), dtype="string", name="text")
        corpus = ["The cat sat on the mat.", "A dog, a DOG!", "Fish swim; birds fly?", "the end"]
        vectorize = layers.TextVectorization(max_tokens=24, output_sequence_length=8)
        vectorize.adapt(np.array(corpus)[:, None])
        x = layers.Embedding(24, 8, mask_zero=True)(vectorize(text))
        x = layers.Dense(16, activation="relu")(layers.GlobalAveragePooling1D()(x))
        net = keras.Model(text, layers.Dense(3, activation="softmax")(x))
        words = "the cat a dog fish birds swim fly mat zebra on sat end".split()
        sentences = [" ".join(rng.choice(words, rng.integers(1, 11))).capitalize() + rng.choice([".", "!", ""])
                     for _ in range(4)]
        return export_keras(net, folder, "text_classifier", {"text": np.array(sentences)[:, None]})


def tf1_graph(rng):
    graph = tf.Graph()
    with graph.as_default():
        x = tf.compat.v1.placeholder(tf.float32, [None, 6], name="x")
        w1 = tf.compat.v1.get_variable("w1", [6, 16], initializer=tf.compat.v1.glorot_uniform_initializer(seed=1))
        b1 = tf.compat.v1.get_variable("b1", [16], initializer=tf.compat.v1.zeros_initializer(), use_resource=False)
        w2 = tf.compat.v1.get_variable("w2", [16, 4], initializer=tf.compat.v1.glorot_uniform_initializer(seed=2))
        y = tf.nn.softmax(tf.matmul(tf.nn.relu(tf.matmul(x, w1) + b1), w2), name="y")
    return graph, x, y


def register_tf1():
    @model("tf1_session", fast=True)
    def make(folder):
        rng = np.random.default_rng(41)
        graph, x, y = tf1_graph(rng)
        with graph.as_default(), tf.compat.v1.Session(graph=graph) as session:
            session.run(tf.compat.v1.global_variables_initializer())
            builder = tf.compat.v1.saved_model.Builder(os.path.join(folder, "tf1_session"))
            signature = tf.compat.v1.saved_model.predict_signature_def({"x": x}, {"y": y})
            builder.add_meta_graph_and_variables(session, ["serve"], signature_def_map={"serving_default": signature})
            builder.save()
        return {"x": rng.standard_normal((3, 6)).astype(np.float32)}


def fetches_of(path):
    """The tensor names the frozen graph at PATH (NAME.pb) fetches, from NAME.fetches."""
    with open(path[:-len(".pb")] + ".fetches") as file:
        return file.read().split()


def run_frozen(path, fetches, inputs, loader="session"):
    """Runs the frozen graph at PATH on INPUTS (by placeholder name) as TensorFlow runs one: in a
    TF1 Session after import_graph_def ("session"), or as a TF2 function pruned from the imported
    graph ("wrap_function"). Returns the FETCHES by node name (the name without ":0")."""
    graph_def = tf.compat.v1.GraphDef.FromString(open(path, "rb").read())
    names = sorted(inputs)
    if loader == "session":
        with tf.Graph().as_default() as graph:
            tf.graph_util.import_graph_def(graph_def, name="")
            with tf.compat.v1.Session(graph=graph) as session:
                values = session.run(fetches, {f"{k}:0": inputs[k] for k in names})
    else:
        imported = tf.compat.v1.wrap_function(
            lambda: tf.graph_util.import_graph_def(graph_def, name=""), [])
        function = imported.prune([imported.graph.get_tensor_by_name(f"{k}:0") for k in names],
                                  [imported.graph.get_tensor_by_name(f) for f in fetches])
        values = [v.numpy() for v in function(*[tf.constant(inputs[k]) for k in names])]
    return {f.split(":")[0]: np.asarray(v) for f, v in zip(fetches, values)}


def freeze(function, folder, name):
    """Writes `function`'s graph with its variables folded into constants as FOLDER/NAME.pb, and
    the tensor names it fetches (one per line) as FOLDER/NAME.fetches."""
    from tensorflow.python.framework.convert_to_constants import convert_variables_to_constants_v2
    frozen = convert_variables_to_constants_v2(function)
    with open(os.path.join(folder, name + ".pb"), "wb") as file:
        file.write(frozen.graph.as_graph_def().SerializeToString())
    write_fetches(folder, name, [t.name for t in frozen.outputs])


def freeze_tf1(build, outputs, dataflow_control_flow=False):
    """A TF1 graph made by BUILD() (called in the graph's scope), its variables initialized in a
    Session and frozen as TF1 froze graphs (`graph_util.convert_variables_to_constants`), keeping
    what the nodes named OUTPUTS need. With DATAFLOW_CONTROL_FLOW, tf.compat.v1's while_loop and
    cond build TF1's dataflow frames (Enter, Switch, Merge, ...) instead of While and If."""
    tf1 = tf.compat.v1
    if dataflow_control_flow:
        tf1.disable_control_flow_v2()
    try:
        graph = tf.Graph()
        with graph.as_default():
            build()
            with tf1.Session(graph=graph) as session:
                session.run(tf1.global_variables_initializer())
                return tf1.graph_util.convert_variables_to_constants(session, graph.as_graph_def(), outputs)
    finally:
        if dataflow_control_flow:
            tf1.enable_control_flow_v2()


def write_fetches(folder, name, fetches):
    with open(os.path.join(folder, name + ".fetches"), "w") as file:
        file.write("\n".join(fetches) + "\n")


def register_frozen():
    import keras
    import keras_hub

    @model("frozen_mobilenet_v2", fast=True)
    def make(folder):
        net, inputs = image_net(keras.applications.MobileNetV2, 64, 27)
        spec = tf.TensorSpec([None, 64, 64, 3], tf.float32, name="image")
        freeze(tf.function(lambda image: net(image)).get_concrete_function(spec), folder,
               "frozen_mobilenet_v2")
        return {"image": inputs["inputs"]}

    @model("frozen_bert")
    def make(folder):
        rng = seeded(28)
        net = keras_hub.models.BertBackbone(
            vocabulary_size=200, num_layers=2, num_heads=2, hidden_dim=32, intermediate_dim=64,
            max_sequence_length=16)
        ids, mask = token_inputs(rng, 2, 12, 200)
        specs = {key: tf.TensorSpec([None, None], tf.int32, name=key)
                 for key in ("token_ids", "segment_ids", "padding_mask")}
        function = tf.function(lambda token_ids, segment_ids, padding_mask: net(
            {"token_ids": token_ids, "segment_ids": segment_ids, "padding_mask": padding_mask}))
        freeze(function.get_concrete_function(**specs), folder, "frozen_bert")
        return {"token_ids": ids, "segment_ids": np.zeros_like(ids), "padding_mask": mask}

    @model("frozen_gru")
    def make(folder):
        # Freezing lowers the GRU's While loop to TF1 dataflow control flow (Enter, Merge,
        # Switch, NextIteration, Exit) over TensorLists.
        rng = seeded(31)
        inputs = keras.Input((12, 5), name="sequence")
        x = keras.layers.GRU(16, return_sequences=True)(inputs)
        x = keras.layers.GRU(8)(x)
        net = keras.Model(inputs, keras.layers.Dense(3, name="logits")(x))
        spec = tf.TensorSpec([None, 12, 5], tf.float32, name="sequence")
        freeze(tf.function(lambda sequence: net(sequence)).get_concrete_function(spec), folder,
               "frozen_gru")
        return {"sequence": rng.standard_normal((3, 12, 5)).astype(np.float32)}

    @model("frozen_tf1_loop")
    def make(folder):
        # TF1 control flow, frozen by TF1: an Elman RNN unrolled by tf.compat.v1.while_loop over
        # the time steps, with a tf.compat.v1.cond clipping the state inside the loop.
        rng = np.random.default_rng(32)
        tf1 = tf.compat.v1

        def build():
            x = tf1.placeholder(tf.float32, [None, 9, 6], name="x")
            initializer = tf1.glorot_uniform_initializer(seed=5)
            w = tf1.get_variable("w", [6, 16], initializer=initializer)
            u = tf1.get_variable("u", [16, 16], initializer=initializer)
            v = tf1.get_variable("v", [16, 4], initializer=initializer)
            steps = tf.transpose(x, [1, 0, 2])

            def body(t, h):
                h = tf.tanh(tf.matmul(tf.gather(steps, t), w) + tf.matmul(h, u))
                h = tf1.cond(tf.reduce_max(tf.abs(h)) > 0.9, lambda: h * 0.9, lambda: h)
                return t + 1, h
            _, h = tf1.while_loop(lambda t, h: t < 9, body,
                                  [tf.constant(0), tf.zeros([tf.shape(x)[0], 16])])
            tf.matmul(h, v, name="logits")
        frozen = freeze_tf1(build, ["logits"], dataflow_control_flow=True)
        with open(os.path.join(folder, "frozen_tf1_loop.pb"), "wb") as file:
            file.write(frozen.SerializeToString())
        write_fetches(folder, "frozen_tf1_loop", ["logits:0"])
        return {"x": rng.standard_normal((3, 9, 6)).astype(np.float32)}

    @model("frozen_tf1", fast=True)
    def make(folder):
        # A TF1 graph frozen as TF1 froze them: its fetch is the logits' BiasAdd, an op tfmp
        # converts, so the conversion must keep that name on a float32 value.
        rng = np.random.default_rng(29)

        def build():
            x = tf.compat.v1.placeholder(tf.float32, [None, 6], name="x")
            w1 = tf.compat.v1.get_variable("w1", [6, 16], initializer=tf.compat.v1.glorot_uniform_initializer(seed=3))
            b1 = tf.compat.v1.get_variable("b1", [16], initializer=tf.compat.v1.constant_initializer(0.1))
            w2 = tf.compat.v1.get_variable("w2", [16, 4], initializer=tf.compat.v1.glorot_uniform_initializer(seed=4))
            b2 = tf.compat.v1.get_variable("b2", [4], initializer=tf.compat.v1.constant_initializer(-0.1))
            hidden = tf.nn.relu(tf.nn.bias_add(tf.matmul(x, w1), b1))
            tf.nn.bias_add(tf.matmul(hidden, w2), b2, name="logits")
        frozen = freeze_tf1(build, ["logits"])
        with open(os.path.join(folder, "frozen_tf1.pb"), "wb") as file:
            file.write(frozen.SerializeToString())
        write_fetches(folder, "frozen_tf1", ["logits:0"])
        return {"x": rng.standard_normal((3, 6)).astype(np.float32)}


def register_tf_keras():
    @model("tf_keras_cnn")
    def make(folder):
        import tf_keras
        tf_keras.utils.set_random_seed(51)
        net = tf_keras.Sequential([
            tf_keras.layers.Input((16, 16, 3), name="image"),
            tf_keras.layers.Conv2D(8, 3, activation="relu"),
            tf_keras.layers.BatchNormalization(),
            tf_keras.layers.MaxPooling2D(),
            tf_keras.layers.Flatten(),
            tf_keras.layers.Dense(4, activation="softmax"),
        ])
        rng = np.random.default_rng(51)
        for _ in range(3):
            net(rng.standard_normal((8, 16, 16, 3)).astype(np.float32), training=True)
        tf.saved_model.save(net, os.path.join(folder, "tf_keras_cnn"))
        signature = tf.saved_model.load(os.path.join(folder, "tf_keras_cnn")).signatures["serving_default"]
        key = list(signature.structured_input_signature[1])[0]
        return {key: rng.standard_normal((2, 16, 16, 3)).astype(np.float32)}


def build(name, folder):
    stamp = os.path.join(folder, name + ".stamp")
    if os.path.exists(stamp) and open(stamp).read() == STAMP:
        return False
    for leftover in (os.path.join(folder, name + suffix) for suffix in ("", ".keras", ".pb", ".fetches")):
        if os.path.isdir(leftover):
            shutil.rmtree(leftover)
        elif os.path.exists(leftover):
            os.remove(leftover)
    inputs = MODELS[name](folder)
    np.savez(os.path.join(folder, name + ".inputs.npz"), **inputs)
    with open(stamp, "w") as file:
        file.write(STAMP)
    return True


def served_signature(path, loaded={}):
    """The serving signature of the SavedModel at PATH, loaded once (a run writes each model it
    serves to a path of its own)."""
    if path not in loaded:
        loaded[path] = tf.saved_model.load(path).signatures["serving_default"]
    return loaded[path]


def serve(path, inputs, frozen_from=None):
    """The outputs TensorFlow serves for INPUTS: the SavedModel at PATH's serving signature, or
    the frozen graph at PATH pruned into a TF2 function (FROZEN_FROM names the zoo's .pb whose
    fetches it has)."""
    if frozen_from:
        return run_frozen(path, fetches_of(frozen_from), inputs, "wrap_function")
    signature = served_signature(path)
    names = list(signature.structured_input_signature[1])
    if len(names) == 1 and len(inputs) == 1:  # a re-loaded Keras model renames its input
        inputs = {names[0]: next(iter(inputs.values()))}
    return {k: v.numpy() for k, v in signature(**{k: tf.constant(v) for k, v in inputs.items()}).items()}


def keras_mixed_export(tfmp, folder, name, policy, scratch):
    """Keras's own mixed precision on the zoo model's weights, as a SavedModel in SCRATCH (None
    for a model not made with Keras): the .keras file with every layer's policy set as
    keras.mixed_precision would set it (tfmp's .keras conversion), exported as the float32 model
    was. Served, not run by `predict`: the signatures' dynamic shapes change TensorFlow's
    arithmetic (on Gemma, Keras's own mixed model errs 1.8e-3 with the static shapes of
    `predict` and 3.0e-3 through its exported signature), and tfmp's output is served."""
    import subprocess
    import keras
    original = os.path.join(folder, name + ".keras")
    if not os.path.exists(original):
        return None
    mixed = os.path.join(scratch, "mixed.keras")
    subprocess.run([tfmp, "convert", original, mixed, "--policy", policy], check=True,
                   capture_output=True)
    net = keras.saving.load_model(mixed, compile=False)
    exported = os.path.join(scratch, "exported")
    net.export(exported, format="tf_saved_model", verbose=False)
    return exported


def error_of(outputs, reference):
    """The largest error over float outputs, relative to each output's scale (at least 1); inf
    where an output is inf or NaN and the reference is finite."""
    error = 0.0
    for key, expected in reference.items():
        if expected.dtype.kind == "f":
            scale = max(1.0, float(np.abs(expected).max()))
            difference = np.abs(outputs[key].astype(np.float64) - expected)
            if not np.all(np.isfinite(difference[np.isfinite(expected)])):
                return float("inf")
            error = max(error, float(difference.max(initial=0.0)) / scale)
    return error


def zoo_inputs(folder, name):
    with np.load(os.path.join(folder, name + ".inputs.npz")) as arrays:
        return {k: arrays[k] for k in arrays.files}


def resampled(inputs, rng):
    """Other inputs of the same kind: each float array's elements, and each integer array's
    with more than two values (token ids), in a random order; masks and segment ids as they are."""
    batch = {}
    for key, value in inputs.items():
        if value.dtype.kind == "f" or (value.dtype.kind in "iu" and len(np.unique(value)) > 2):
            batch[key] = rng.permutation(value.ravel()).reshape(value.shape)
        else:
            batch[key] = value
    return batch


def table(tfmp, names, folder):
    """Per model: op types, and for each policy the compute ops converted, the casts, the largest
    error TensorFlow measures on the conversion (relative to each output's scale), and the time
    `tfmp convert` spent verifying. Prints a Markdown table."""
    import json
    import re
    import subprocess
    import tempfile
    from tensorflow.python.saved_model import loader_impl

    print("| model | op types | float16: converted, casts, max error (Keras's), verification "
          "| bfloat16: converted, casts, max error (Keras's) |")
    print("|---|---|---|---|")
    all_ops = set()
    for name in names:
        model = os.path.join(folder, name)
        frozen = model + ".pb" if os.path.exists(model + ".pb") else None
        if frozen:
            model = frozen
            graph = tf.compat.v1.GraphDef.FromString(open(frozen, "rb").read())
        else:
            graph = loader_impl.parse_saved_model(model).meta_graphs[0].graph_def
        ops = {n.op for n in graph.node} | {n.op for f in graph.library.function for n in f.node_def}
        all_ops |= ops
        inputs = zoo_inputs(folder, name)
        reference = serve(model, inputs, frozen)
        cells = []
        for policy in ("mixed_float16", "mixed_bfloat16"):
            with tempfile.TemporaryDirectory() as scratch:
                output = os.path.join(scratch, "out.pb" if frozen else "out")
                report = os.path.join(scratch, "report.json")
                result = subprocess.run([tfmp, "convert", model, output, "--policy", policy,
                                         "--calibration", os.path.join(folder, name + ".inputs.npz"),
                                         "--report", report], capture_output=True, text=True)
                if result.returncode != 0:
                    cells.append("refused: " + result.stderr.strip().splitlines()[-1][:80])
                    continue
                facts = json.load(open(report))
                error = error_of(serve(output, inputs, frozen), reference)
                seconds = re.search(r"verified .* in ([0-9.]+) s", result.stdout)
                exported = keras_mixed_export(tfmp, folder, name, policy, scratch)
                bar = error_of(serve(exported, inputs), reference) if exported else None
                cell = f"{facts['convertedOpCount']}/{facts['computeOpCount']}, {facts['castsInserted']}, {error:.1e}"
                cell += f" ({bar:.1e})" if bar is not None else ""
                if policy == "mixed_float16":
                    cell += f", {seconds.group(1) if seconds else '-'} s"
                cells.append(cell)
        print(f"| {name} | {len(ops)} | {cells[0]} | {cells[1]} |", flush=True)
    print(f"\n{len(names)} models, {len(all_ops)} distinct op types")


def fidelity(tfmp, names, folder, batches):
    """Per Keras-made model and policy, over BATCHES input batches (the zoo's, then resampled
    ones): the ratio of the conversion's error to Keras's own mixed precision's (the table's two
    errors), as the median with its range, and on how many batches the conversion erred no more.
    Prints a Markdown table."""
    import subprocess
    import tempfile
    print("| model | float16: error ratio, median (range), batches at or below Keras's "
          "| bfloat16: the same |")
    print("|---|---|---|")
    for name in names:
        if not os.path.exists(os.path.join(folder, name + ".keras")):
            continue
        model = os.path.join(folder, name)
        rng = np.random.default_rng(1)
        first = zoo_inputs(folder, name)
        samples = [first] + [resampled(first, rng) for _ in range(batches - 1)]
        references = [serve(model, inputs) for inputs in samples]
        cells = []
        for policy in ("mixed_float16", "mixed_bfloat16"):
            with tempfile.TemporaryDirectory() as scratch:
                output = os.path.join(scratch, "out")
                subprocess.run([tfmp, "convert", model, output, "--policy", policy, "--no-verify"],
                               check=True, capture_output=True)
                exported = keras_mixed_export(tfmp, folder, name, policy, scratch)
                ratios = []
                for inputs, reference in zip(samples, references):
                    ours = error_of(serve(output, inputs), reference)
                    theirs = error_of(serve(exported, inputs), reference)
                    ratios.append(ours / theirs if theirs > 0 else (1.0 if ours == 0 else float("inf")))
            ratios = np.array(ratios)
            cells.append(f"{np.median(ratios):.2f} ({ratios.min():.2f}-{ratios.max():.2f}), "
                         f"{int(np.sum(ratios <= 1.0))}/{len(ratios)}")
        print(f"| {name} | {cells[0]} | {cells[1]} |", flush=True)


def variable_at(root, key):
    """The variable a checkpoint key names, found along the object graph of `root` (the key's
    path of child names, to its `.ATTRIBUTES`)."""
    node = root
    for name in key.split("/.ATTRIBUTES")[0].split("/"):
        node = node._trackable_children()[name]
    return node


def tensorflow_gradients(path, signature, inputs, weights, keys, positions=None):
    """The gradient of sum(output * weight) over the outputs with respect to the variables the
    checkpoint `keys` name, by GradientTape through the restored signature, by key. `positions`
    (from tfmp_gradients) says where each key's variable enters the signature's call, counted
    from the end, which is where the restored function captures it."""
    loaded = tf.saved_model.load(path)  # kept: its signature's variables live as long as it
    function = loaded.signatures[signature]
    captured = function.variables
    by_handle = {id(v.handle): v for v in captured}
    captures = function.captured_inputs

    def used(key):
        position = (positions or {}).get(key, -1)
        if 0 < position <= len(captures) and id(captures[-position]) in by_handle:
            return by_handle[id(captures[-position])]
        # A Keras export saves each variable twice (two restored copies, one captured): the
        # captured variable itself, else the captured one of the same name. A TF1 model has no
        # object graph: its checkpoint keys are the variables' names.
        try:
            variable = variable_at(loaded, key)
        except KeyError:
            named = [v for v in captured if v.name.split(":")[0] == key]
            if len(named) != 1:
                raise
            return named[0]
        if any(v is variable for v in captured):
            return variable
        named = [v for v in captured if v.name == variable.name and v.shape == variable.shape]
        if len(named) > 1:  # keras-hub reuses names (every "kernel"): the copy holds the same values
            named = [v for v in named if np.array_equal(v.numpy(), variable.numpy())]
        return named[0] if len(named) == 1 else variable
    variables = [used(key) for key in keys]
    with tf.GradientTape() as tape:
        for variable in variables:
            tape.watch(variable)
        outputs = function(**{k: tf.constant(v) for k, v in inputs.items()})
        loss = tf.add_n([tf.reduce_sum(tf.cast(outputs[name], tf.float32) * weight)
                         for name, weight in weights.items()])
    gradients = tape.gradient(loss, variables)
    return {key: None if g is None else tf.convert_to_tensor(g).numpy() for key, g in zip(keys, gradients)}


def tfmp_gradients(helper, path, signature, inputs, weights, scratch):
    """The same gradients as tfmp emits and its runtime runs them (the interop helper), by the
    checkpoint key of each variable; raises RuntimeError with tfmp's message when it refuses."""
    import subprocess
    fed, out = os.path.join(scratch, "fed.npz"), os.path.join(scratch, "gradients.npz")
    np.savez(fed, **inputs, **{f"{name}_weight": w for name, w in weights.items()})
    result = subprocess.run([helper, "gradients", path, signature, fed, out], capture_output=True, text=True)
    if result.returncode != 0:
        raise RuntimeError(result.stderr.split("Error raised at top level: ")[-1].splitlines()[0])
    with np.load(out) as data:
        return {k: data[k] for k in data.files}


def split_positions(found):
    """tfmp_gradients' result as (gradients, positions): the `position/<key>` entries apart."""
    positions = {k[len("position/"):]: int(v) for k, v in found.items() if k.startswith("position/")}
    return {k: v for k, v in found.items() if not k.startswith("position/")}, positions


def gradient_comparison(helper, path, signature, inputs, scratch, seed=5):
    """For random weights on every output element, tfmp's and TensorFlow's gradient of each
    variable tfmp differentiates, by checkpoint key, and a function giving each variable's
    spread (``gradient_spreads``) at these inputs and weights."""
    rng = np.random.default_rng(seed)
    loaded = tf.saved_model.load(path)
    outputs = loaded.signatures[signature](**{k: tf.constant(v) for k, v in inputs.items()})
    weights = {name: rng.standard_normal(value.shape).astype(np.float32) for name, value in outputs.items()
               if value.dtype.is_floating}
    ours, positions = split_positions(tfmp_gradients(helper, path, signature, inputs, weights, scratch))
    theirs = tensorflow_gradients(path, signature, inputs, weights, sorted(ours), positions)
    missing = [key for key, gradient in theirs.items() if gradient is None]
    if missing:
        raise AssertionError(f"tfmp gives gradients TensorFlow has none of: {missing[:3]}")

    def spreads():
        return gradient_spreads(helper, path, signature, inputs, weights, (ours, theirs), positions, scratch)
    return ours, theirs, spreads


def gradient_spreads(helper, path, signature, inputs, weights, found, positions, scratch, trials=3, seed=1):
    """How well each variable's gradient is defined in float32: {checkpoint key: the farthest
    tfmp's gradient moves from its answer plus the farthest TensorFlow's moves from its own},
    where `found` is the pair (tfmp's, TensorFlow's) at the values as given, and the moved
    answers are each one's at `trials` seeded nudges of every float fed (the inputs and the
    output weights, each element by at most one ulp), and TensorFlow's with its other CPU
    backend (Eigen's kernels, oneDNN off). Two gradients that differ by less than that agree as
    well as each agrees with itself. A nudge moves a value across a ReLU or max-pooling kink
    that float32 rounding put it on: on DenseNet121 (AVX-512 EPYC) one activation sits on its
    ReLU's kink, and tfmp's gradients are 4.7e-3 of their scale from TensorFlow's at the zoo's
    inputs and 1e-6 from them at each nudged input tried. TensorFlow's two backends sum in other
    orders, as tfmp does: on T5 and ViT their smallest gradients (about 1e-4 of the largest)
    differ by up to 1.1e-3 of their own scale."""
    rng = np.random.default_rng(seed)

    def nudged(value):
        if value.dtype != np.float32:
            return value
        toward = rng.choice([-np.inf, np.inf], size=value.shape).astype(np.float32)
        return np.where(rng.random(value.shape) < 0.5, np.nextafter(value, toward), value)

    def moved(spread, answer, other):
        for key in spread:
            spread[key] = max(spread[key], float(np.max(np.abs(other[key].astype(np.float64) - answer[key]))))

    ours, theirs = found
    keys = sorted(theirs)
    spread_ours, spread_theirs = dict.fromkeys(keys, 0.0), dict.fromkeys(keys, 0.0)
    for _ in range(trials):
        fed, weighted = {k: nudged(v) for k, v in inputs.items()}, {k: nudged(v) for k, v in weights.items()}
        moved(spread_ours, ours, split_positions(tfmp_gradients(helper, path, signature, fed, weighted, scratch))[0])
        moved(spread_theirs, theirs, tensorflow_gradients(path, signature, fed, weighted, keys, positions))
    moved(spread_theirs, theirs, eigen_gradients(path, signature, inputs, weights, keys, positions, scratch))
    return {key: spread_ours[key] + spread_theirs[key] for key in keys}


def eigen_gradients(path, signature, inputs, weights, keys, positions, scratch):
    """``tensorflow_gradients`` with TensorFlow's Eigen CPU kernels (oneDNN off), in a process of
    its own: TensorFlow reads the switch when it loads."""
    import json
    import subprocess
    request, out = os.path.join(scratch, "eigen-request.npz"), os.path.join(scratch, "eigen.npz")
    np.savez(request, **{f"input/{k}": v for k, v in inputs.items()}, **{f"weight/{k}": v for k, v in weights.items()},
             request=json.dumps({"path": path, "signature": signature, "keys": keys, "positions": positions}))
    subprocess.run([sys.executable, os.path.abspath(__file__), "--eigen-gradients", request, out],
                   env={**os.environ, "TF_ENABLE_ONEDNN_OPTS": "0"}, check=True, capture_output=True)
    with np.load(out) as data:
        return {k: data[k] for k in data.files}


def answer_eigen_gradients(request, out):
    """Answers ``eigen_gradients``' request in this process (started with oneDNN off)."""
    import json
    with np.load(request) as data:
        asked = json.loads(str(data["request"]))
        inputs = {k[len("input/"):]: data[k] for k in data.files if k.startswith("input/")}
        weights = {k[len("weight/"):]: data[k] for k in data.files if k.startswith("weight/")}
    found = tensorflow_gradients(asked["path"], asked["signature"], inputs, weights, asked["keys"], asked["positions"])
    np.savez(out, **{k: v for k, v in found.items() if v is not None})


def differences(ours, theirs):
    """{checkpoint key: (largest difference of the two gradients, largest |theirs|)}."""
    return {key: (float(np.max(np.abs(ours[key].astype(np.float64) - expected))),
                  float(np.max(np.abs(expected)))) for key, expected in theirs.items()}


def gradient_differences(helper, path, signature, inputs, scratch, seed=5):
    """tfmp's gradients against TensorFlow's (``gradient_comparison``), as ``differences``."""
    ours, theirs, _ = gradient_comparison(helper, path, signature, inputs, scratch, seed)
    return differences(ours, theirs)


def gradient_scales(differences):
    """{checkpoint key: the scale a variable's gradient difference is measured against: the
    gradient's largest element, or 1e-4 of the model's largest gradient element when the
    variable's is smaller (a gradient that is zero in exact arithmetic, such as an attention key
    bias's, is rounding noise in both)}."""
    model_scale = max((scale for _, scale in differences.values()), default=0.0)
    return {key: max(scale, 1e-4 * model_scale, 1e-30) for key, (_, scale) in differences.items()}


def relative_errors(differences):
    """{checkpoint key: the largest difference between tfmp's and TensorFlow's gradient of the
    variable, relative to its ``gradient_scales``}."""
    scales = gradient_scales(differences)
    return {key: difference / scales[key] for key, (difference, _) in differences.items()}


def gradient_error(differences):
    """The largest of ``relative_errors``."""
    return max(relative_errors(differences).values(), default=0.0)


def gradients(helper, names, folder):
    """Prints, per SavedModel of the zoo, how tfmp's gradients compare with GradientTape's."""
    import tempfile
    print("| model | variables | largest difference (of the gradient's scale, see gradient_error) | |")
    print("|---|---|---|---|")
    for name in names:
        path = os.path.join(folder, name)
        if not os.path.isdir(path):
            continue
        signature = "serving_default"
        with tempfile.TemporaryDirectory() as scratch:
            try:
                differences = gradient_differences(helper, path, signature, zoo_inputs(folder, name), scratch)
            except (RuntimeError, AssertionError) as error:
                print(f"| {name} | | | {str(error)[:160]} |", flush=True)
                continue
        print(f"| {name} | {len(differences)} | {gradient_error(differences):.1e} | |", flush=True)


def register_all():
    register_applications()
    register_hub()
    register_recurrent()
    register_dense_prediction()
    register_modules()
    register_tf1()
    register_tf_keras()
    register_frozen()


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--out", default=os.path.join(ROOT, "bench-work", "zoo"))
    parser.add_argument("--only", nargs="*")
    parser.add_argument("--list", action="store_true")
    parser.add_argument("--fast", action="store_true", help="only the subset the test command runs")
    parser.add_argument("--table", metavar="TFMP", help="print the README's table, converting with TFMP")
    parser.add_argument("--fidelity", metavar="TFMP",
                        help="print each Keras-made model's error against Keras's own over --batches batches")
    parser.add_argument("--batches", type=int, default=8)
    parser.add_argument("--gradients", metavar="HELPER",
                        help="compare tfmp's gradients (run by the interop helper) with GradientTape's")
    parser.add_argument("--eigen-gradients", nargs=2, metavar=("REQUEST", "OUT"), help=argparse.SUPPRESS)
    arguments = parser.parse_args()
    if arguments.eigen_gradients:
        return answer_eigen_gradients(*arguments.eigen_gradients)
    register_all()
    names = arguments.only or (FAST if arguments.fast else list(MODELS))
    if arguments.list:
        print("\n".join(names))
        return
    if arguments.table:
        return table(arguments.table, names, arguments.out)
    if arguments.fidelity:
        return fidelity(arguments.fidelity, names, arguments.out, arguments.batches)
    if arguments.gradients:
        return gradients(arguments.gradients, names, arguments.out)
    os.makedirs(arguments.out, exist_ok=True)
    for name in names:
        made = build(name, arguments.out)
        print(f"{name}: {'made' if made else 'cached'}", flush=True)


if __name__ == "__main__":
    sys.exit(main())
