#!/usr/bin/env python3
"""Builds the test fixtures and the shipped example model with real TensorFlow.

Usage:
  Scripts/make_fixtures.py                 # Tests/_TestSupport/Fixtures/* and Examples/digits
  Scripts/make_fixtures.py --bert-base DIR # a BERT-base-sized SavedModel for benchmarks (not committed)
  Scripts/make_fixtures.py --resnet50 DIR  # a ResNet50 SavedModel (random weights) for benchmarks

Every model is built and briefly trained with fixed seeds, exported as a SavedModel, and saved
beside its sample inputs (inputs.npz) and what TensorFlow computes for them (outputs.npz), keyed
by the serving_default signature's input and output names. MANIFEST.json records the versions,
the seed and this script's hash. Needs tensorflow-cpu==2.21.0 (Scripts/test sets up the venv).
"""
import argparse
import hashlib
import json
import os
import shutil
import sys

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
import numpy as np
import tensorflow as tf
import keras

SEED = 20261129
ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
FIXTURES = os.path.join(ROOT, "Tests", "_TestSupport", "Fixtures")
EXAMPLES = os.path.join(ROOT, "Examples")


def reset_seed(offset=0):
    keras.utils.set_random_seed(SEED + offset)


def compile_and_fit(model, x, y, loss, epochs=2):
    model.compile(optimizer=keras.optimizers.Adam(1e-3), loss=loss)
    model.fit(x, y, epochs=epochs, batch_size=16, verbose=0, shuffle=False)


def export(model, path, sample_inputs):
    """Exports a Keras model and records TF's outputs for sample_inputs (a dict)."""
    shutil.rmtree(path, ignore_errors=True)
    model.export(path, verbose=False)
    return record(path, sample_inputs)


def record(path, sample_inputs):
    loaded = tf.saved_model.load(path)
    fn = loaded.signatures["serving_default"]
    _, keywords = fn.structured_input_signature
    if set(keywords) != set(sample_inputs):
        raise SystemExit(f"{path}: signature inputs {sorted(keywords)} != {sorted(sample_inputs)}")
    outputs = {k: v.numpy() for k, v in fn(**{k: tf.constant(v) for k, v in sample_inputs.items()}).items()}
    np.savez(os.path.join(path, "..", os.path.basename(path) + ".inputs.npz"), **sample_inputs)
    np.savez(os.path.join(path, "..", os.path.basename(path) + ".outputs.npz"), **outputs)
    return {
        "inputs": {k: [str(v.dtype), list(v.shape)] for k, v in sample_inputs.items()},
        "outputs": {k: [str(v.dtype), list(v.shape)] for k, v in outputs.items()},
    }


def mlp(rng):
    reset_seed(1)
    x = rng.normal(size=(128, 20)).astype("float32")
    y = rng.integers(0, 10, size=(128,))
    inp = keras.Input((20,), name="features")
    h = keras.layers.Dense(32, activation="relu", name="hidden")(inp)
    out = keras.layers.Dense(10, activation="softmax", name="probabilities")(h)
    model = keras.Model(inp, out, name="mlp")
    compile_and_fit(model, x, y, "sparse_categorical_crossentropy")
    return model, {"features": x[:4]}


def cnn_bn(rng):
    reset_seed(2)
    x = rng.normal(size=(64, 12, 12, 1)).astype("float32")
    y = rng.integers(0, 5, size=(64,))
    inp = keras.Input((12, 12, 1), name="image")
    h = keras.layers.Conv2D(8, 3, padding="same", name="conv")(inp)
    h = keras.layers.BatchNormalization(name="bn")(h)
    h = keras.layers.ReLU(name="relu")(h)
    h = keras.layers.MaxPooling2D(2, name="pool")(h)
    h = keras.layers.Conv2D(8, 3, strides=2, padding="valid", activation="relu", name="conv2")(h)
    h = keras.layers.Flatten(name="flatten")(h)
    out = keras.layers.Dense(5, activation="softmax", name="probabilities")(h)
    model = keras.Model(inp, out, name="cnn_bn")
    compile_and_fit(model, x, y, "sparse_categorical_crossentropy")
    return model, {"image": x[:4]}


def depthwise(rng):
    reset_seed(3)
    x = rng.normal(size=(64, 10, 10, 4)).astype("float32")
    y = rng.normal(size=(64, 3)).astype("float32")
    inp = keras.Input((10, 10, 4), name="image")
    h = keras.layers.DepthwiseConv2D(3, padding="same", depth_multiplier=2, name="depthwise")(inp)
    h = keras.layers.BatchNormalization(name="bn")(h)
    h = keras.layers.Activation("relu6", name="relu6")(h)
    h = keras.layers.Conv2D(16, 1, name="pointwise")(h)
    h = keras.layers.SeparableConv2D(8, 3, padding="same", activation="swish", name="separable")(h)
    h = keras.layers.GlobalAveragePooling2D(name="gap")(h)
    out = keras.layers.Dense(3, name="regression")(h)
    model = keras.Model(inp, out, name="depthwise")
    compile_and_fit(model, x, y, "mse")
    return model, {"image": x[:4]}


def attention(rng):
    reset_seed(4)
    tokens = rng.integers(0, 50, size=(64, 8)).astype("int32")
    y = rng.integers(0, 3, size=(64,))
    inp = keras.Input((8,), dtype="int32", name="tokens")
    e = keras.layers.Embedding(50, 16, name="embedding")(inp)
    a = keras.layers.MultiHeadAttention(num_heads=2, key_dim=8, name="mha")(e, e)
    h = keras.layers.LayerNormalization(name="ln1")(keras.layers.Add(name="residual1")([e, a]))
    f = keras.layers.Dense(32, activation="gelu", name="ffn_in")(h)
    f = keras.layers.Dense(16, name="ffn_out")(f)
    h = keras.layers.LayerNormalization(name="ln2")(keras.layers.Add(name="residual2")([h, f]))
    h = keras.layers.GlobalAveragePooling1D(name="pool")(h)
    out = keras.layers.Dense(3, activation="softmax", name="probabilities")(h)
    model = keras.Model(inp, out, name="attention")
    compile_and_fit(model, tokens, y, "sparse_categorical_crossentropy")
    return model, {"tokens": tokens[:4]}


def lstm(rng):
    reset_seed(5)
    x = rng.normal(size=(64, 10, 4)).astype("float32")
    y = rng.normal(size=(64, 1)).astype("float32")
    inp = keras.Input((10, 4), name="sequence")
    h = keras.layers.LSTM(16, name="lstm")(inp)
    out = keras.layers.Dense(1, name="value")(h)
    model = keras.Model(inp, out, name="lstm")
    compile_and_fit(model, x, y, "mse")
    return model, {"sequence": x[:4]}


def two_io(rng):
    reset_seed(6)
    dense = rng.normal(size=(64, 8)).astype("float32")
    ids = rng.integers(0, 20, size=(64, 4)).astype("int32")
    score = rng.normal(size=(64, 1)).astype("float32")
    label = rng.integers(0, 4, size=(64,))
    dense_in = keras.Input((8,), name="dense_features")
    ids_in = keras.Input((4,), dtype="int32", name="category_ids")
    e = keras.layers.Flatten(name="flatten")(keras.layers.Embedding(20, 4, name="embedding")(ids_in))
    h = keras.layers.Concatenate(name="concat")([dense_in, e])
    h = keras.layers.Dense(16, activation="tanh", name="shared")(h)
    score_out = keras.layers.Dense(1, name="score")(h)
    label_out = keras.layers.Dense(4, activation="softmax", name="label")(h)
    model = keras.Model([dense_in, ids_in], [score_out, label_out], name="two_io")
    model.compile(optimizer="adam", loss=["mse", "sparse_categorical_crossentropy"])
    model.fit([dense, ids], [score, label], epochs=2, batch_size=16, verbose=0, shuffle=False)
    return model, {"dense_features": dense[:4], "category_ids": ids[:4]}


class CustomMath(tf.Module):
    """A hand-written module: exp, log, reductions and an int64 step counter."""

    def __init__(self, rng):
        super().__init__(name="custom_math")
        self.w = tf.Variable(rng.normal(size=(6, 5)).astype("float32"), name="w")
        self.b = tf.Variable(rng.normal(size=(5,)).astype("float32"), name="b")
        self.scale = tf.Variable(np.float32(0.5), name="scale")
        self.step = tf.Variable(np.int64(7), name="step")

    @tf.function(input_signature=[tf.TensorSpec([None, 6], tf.float32, name="x")])
    def __call__(self, x):
        logits = tf.matmul(x, self.w) + self.b
        shifted = logits - tf.reduce_max(logits, axis=-1, keepdims=True)
        log_sum_exp = tf.math.log(tf.reduce_sum(tf.exp(shifted), axis=-1, keepdims=True))
        log_probs = shifted - log_sum_exp
        energy = tf.reduce_mean(tf.square(x), axis=-1) * self.scale
        norm = tf.sqrt(tf.reduce_sum(tf.square(logits), axis=-1) + 1e-6)
        return {"log_probs": log_probs, "energy": energy, "norm": norm,
                "steps": tf.cast(self.step, tf.float32) + tf.reduce_min(norm) * 0.0}


def custom_module(rng, path):
    module = CustomMath(rng)
    shutil.rmtree(path, ignore_errors=True)
    tf.saved_model.save(module, path, signatures={"serving_default": module.__call__})
    return record(path, {"x": rng.normal(size=(3, 6)).astype("float32")})


class OneShardPerVariable(tf.train.experimental.ShardingCallback):
    """Puts each whole tensor in a shard of its own (the object graph joins the first)."""

    @property
    def description(self):
        return "one shard per variable"

    def __call__(self, shardable_tensors):
        shards = []
        for shardable in shardable_tensors:
            tensor = {shardable.checkpoint_key: {shardable.slice_spec: shardable.tensor}}
            shards.append(tensor)
        return shards


class OpZoo(tf.Module):
    """One function using the ops the CPU runtime must cover beyond the Keras fixtures."""

    def __init__(self, rng):
        super().__init__(name="op_zoo")
        self.scale = tf.Variable(rng.normal(size=(4,)).astype("float32"), name="scale")
        self.offset = tf.Variable(rng.normal(size=(4,)).astype("float32"), name="offset")
        self.mean = tf.Variable(rng.normal(size=(4,)).astype("float32"), name="mean")
        self.variance = tf.Variable(rng.uniform(0.5, 2.0, size=(4,)).astype("float32"), name="variance")

    @tf.function(input_signature=[tf.TensorSpec([None, 6, 6, 4], tf.float32, name="images"),
                                  tf.TensorSpec([None, 5], tf.float32, name="x")])
    def __call__(self, images, x):
        bn, _, _, _, _, _ = tf.raw_ops.FusedBatchNormV3(
            x=images, scale=self.scale, offset=self.offset, mean=self.mean, variance=self.variance,
            epsilon=1e-3, is_training=False)
        pooled = tf.nn.avg_pool2d(tf.nn.leaky_relu(bn, alpha=0.2), 2, 2, "SAME")
        padded = tf.pad(pooled, [[0, 0], [1, 0], [0, 1], [0, 0]])
        conv = tf.nn.conv2d(padded, tf.ones([2, 2, 4, 3]) * 0.1, 1, [[0, 0], [1, 1], [0, 0], [0, 0]])
        a, b = tf.split(x, [2, 3], axis=1)
        parts = tf.unstack(tf.tile(a, [1, 2]), axis=1)
        selu = tf.nn.selu(tf.slice(x, [0, 1], [-1, 3]))
        power = tf.pow(tf.abs(b) + 1.0, 1.5) + tf.math.log1p(tf.abs(b))
        cond = tf.cond(tf.reduce_sum(x) > 0.0, lambda: x * 2.0, lambda: x - 1.0)
        return {
            "conv": conv, "softmax": tf.nn.log_softmax(x), "selu": selu, "power": power,
            "parts": tf.stack(parts, axis=0), "argmax": tf.cast(tf.argmax(x, axis=1), tf.float32),
            "expanded": x[..., tf.newaxis, 1:4] + tf.zeros_like(x)[:, tf.newaxis, :3] + tf.ones_like(x)[:, None, 2:],
            "cond": cond, "gelu": tf.nn.gelu(x, approximate=True) + tf.nn.relu6(x * 4.0),
        }


def op_zoo(rng, path):
    module = OpZoo(rng)
    shutil.rmtree(path, ignore_errors=True)
    tf.saved_model.save(module, path, signatures={"serving_default": module.__call__})
    return record(path, {"images": rng.normal(size=(2, 6, 6, 4)).astype("float32"),
                         "x": rng.normal(size=(3, 5)).astype("float32")})


def sharded_module(rng, path):
    """A module whose checkpoint has several data shards, each holding whole tensors."""
    module = tf.Module(name="sharded")
    module.a = tf.Variable(rng.normal(size=(64, 64)).astype("float32"), name="a")
    module.b = tf.Variable(rng.normal(size=(64, 64)).astype("float32"), name="b")
    module.c = tf.Variable(rng.normal(size=(64,)).astype("float32"), name="c")
    module.f = tf.function(
        lambda x: {"y": tf.matmul(tf.matmul(x, module.a), module.b) + module.c},
        input_signature=[tf.TensorSpec([None, 64], tf.float32, name="x")])
    shutil.rmtree(path, ignore_errors=True)
    options = tf.saved_model.SaveOptions(
        experimental_sharding_callback=OneShardPerVariable())
    tf.saved_model.save(module, path, signatures={"serving_default": module.f}, options=options)
    return record(path, {"x": rng.normal(size=(2, 64)).astype("float32")})


def keras_archives(rng):
    """Compiled, briefly trained Keras 3 models saved as .keras archives, with training data."""
    archives = {}
    builders = {
        "keras_dense": mlp, "keras_cnn": cnn_bn, "keras_attention": attention, "keras_lstm": lstm,
    }
    for name, build in builders.items():
        model, sample = build(rng)
        archives[name] = (model, sample)
    reset_seed(10)
    inp = keras.Input((6,), name="features")
    block = keras.Sequential(
        [keras.layers.Dense(12, activation="relu", name="inner_dense"),
         keras.layers.BatchNormalization(name="inner_bn")], name="block")
    h = block(inp)
    h = keras.layers.Dense(12, activation="relu", name="middle")(h)
    out = keras.layers.Dense(4, activation="softmax", name="probabilities")(h)
    nested = keras.Model(inp, out, name="nested")
    x = rng.normal(size=(64, 6)).astype("float32")
    compile_and_fit(nested, x, rng.integers(0, 4, size=(64,)), "sparse_categorical_crossentropy")
    archives["keras_nested"] = (nested, {"features": x[:4]})
    for name, (model, sample) in archives.items():
        path = os.path.join(FIXTURES, name + ".keras")
        model.save(path)
        # Training data for fine-tuning tests: the sample inputs and labels of the model's loss.
        labels = model.predict(list(sample.values())[0] if len(sample) == 1 else sample, verbose=0)
        np.savez(os.path.join(FIXTURES, name + ".data.npz"), **sample,
                 labels=np.argmax(labels, -1) if labels.shape[-1] > 1 else labels)
    return sorted(archives)


def digits_example(path):
    """A small CNN trained on scikit-learn's bundled 8x8 digits: the README's example."""
    from sklearn.datasets import load_digits
    reset_seed(7)
    digits = load_digits()
    images = (digits.images / 16.0).astype("float32")[..., None]
    labels = digits.target.astype("int64")
    train, test = slice(0, 1500), slice(1500, None)
    inp = keras.Input((8, 8, 1), name="image")
    h = keras.layers.Conv2D(16, 3, padding="same", activation="relu", name="conv1")(inp)
    h = keras.layers.Conv2D(32, 3, padding="same", activation="relu", name="conv2")(h)
    h = keras.layers.MaxPooling2D(2, name="pool")(h)
    h = keras.layers.Flatten(name="flatten")(h)
    h = keras.layers.Dense(64, activation="relu", name="dense")(h)
    out = keras.layers.Dense(10, activation="softmax", name="probabilities")(h)
    model = keras.Model(inp, out, name="digits")
    model.compile(optimizer=keras.optimizers.Adam(2e-3), loss="sparse_categorical_crossentropy",
                  metrics=["accuracy"])
    model.fit(images[train], labels[train], epochs=12, batch_size=32, verbose=0, shuffle=True)
    _, accuracy = model.evaluate(images[test], labels[test], verbose=0)
    shutil.rmtree(path, ignore_errors=True)
    model.export(path, verbose=False)
    np.save(os.path.join(EXAMPLES, "digits-sample.npy"), images[test][:8])
    np.save(os.path.join(EXAMPLES, "digits-sample-labels.npy"), labels[test][:8])
    print(f"digits example: test accuracy {accuracy:.4f} on {len(labels[test])} held-out images")
    return float(accuracy)


def bert_base(path):
    """A BERT-base-sized encoder (12 layers, hidden 768, 12 heads, vocab 30522) with random weights."""
    reset_seed(8)
    hidden, heads, layers, vocab, seq = 768, 12, 12, 30522, 128
    ids = keras.Input((seq,), dtype="int32", name="input_ids")
    x = keras.layers.Embedding(vocab, hidden, name="word_embeddings")(ids)
    positions = keras.layers.Embedding(512, hidden, name="position_embeddings")(
        keras.ops.arange(seq)[None, :])
    x = keras.layers.LayerNormalization(epsilon=1e-12, name="embeddings_ln")(x + positions)
    for i in range(layers):
        a = keras.layers.MultiHeadAttention(heads, hidden // heads, name=f"layer{i}_attention")(x, x)
        x = keras.layers.LayerNormalization(epsilon=1e-12, name=f"layer{i}_attention_ln")(x + a)
        f = keras.layers.Dense(3072, activation="gelu", name=f"layer{i}_intermediate")(x)
        f = keras.layers.Dense(hidden, name=f"layer{i}_output")(f)
        x = keras.layers.LayerNormalization(epsilon=1e-12, name=f"layer{i}_output_ln")(x + f)
    pooled = keras.layers.Dense(hidden, activation="tanh", name="pooler")(x[:, 0])
    model = keras.Model(ids, pooled, name="bert_base")
    shutil.rmtree(path, ignore_errors=True)
    model.export(path, verbose=False)
    print(f"BERT-base-sized model: {model.count_params():,} parameters in {path}")


def resnet50(path):
    """Keras's ResNet50 architecture with random weights (nothing is downloaded)."""
    reset_seed(9)
    model = keras.applications.ResNet50(weights=None, input_shape=(224, 224, 3))
    shutil.rmtree(path, ignore_errors=True)
    model.export(path, verbose=False)
    print(f"ResNet50: {model.count_params():,} parameters in {path}")


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--bert-base", metavar="DIR")
    parser.add_argument("--resnet50", metavar="DIR")
    parser.add_argument("--only", metavar="FIXTURE", help="rebuild one fixture (op_zoo) and the manifest entry")
    args = parser.parse_args()
    if args.only:
        if args.only != "op_zoo":
            sys.exit("--only supports op_zoo")
        manifest_path = os.path.join(FIXTURES, "MANIFEST.json")
        manifest = json.load(open(manifest_path))
        manifest["fixtures"]["op_zoo"] = {"kind": "tf.Module, op coverage",
                                          **op_zoo(np.random.default_rng(SEED + 99), os.path.join(FIXTURES, "op_zoo"))}
        manifest["script_sha256"] = hashlib.sha256(open(__file__, "rb").read()).hexdigest()
        with open(manifest_path, "w") as f:
            json.dump(manifest, f, indent=2, sort_keys=True)
            f.write("\n")
        return
    if args.bert_base or args.resnet50:
        if args.bert_base:
            bert_base(args.bert_base)
        if args.resnet50:
            resnet50(args.resnet50)
        return
    if tf.__version__ != "2.21.0":
        sys.exit(f"make_fixtures.py needs TensorFlow 2.21.0, found {tf.__version__}")
    os.makedirs(FIXTURES, exist_ok=True)
    rng = np.random.default_rng(SEED)
    manifest = {"tensorflow": tf.__version__, "keras": keras.__version__, "seed": SEED,
                "script_sha256": hashlib.sha256(open(__file__, "rb").read()).hexdigest(),
                "fixtures": {}}
    for name, build in [("mlp", mlp), ("cnn_bn", cnn_bn), ("depthwise", depthwise),
                        ("attention", attention), ("lstm", lstm), ("two_io", two_io)]:
        model, sample = build(rng)
        manifest["fixtures"][name] = {"kind": "keras-export", **export(model, os.path.join(FIXTURES, name), sample)}
    manifest["fixtures"]["custom_math"] = {"kind": "tf.Module",
                                           **custom_module(rng, os.path.join(FIXTURES, "custom_math"))}
    manifest["fixtures"]["sharded"] = {"kind": "tf.Module, sharded checkpoint",
                                       **sharded_module(rng, os.path.join(FIXTURES, "sharded"))}
    manifest["fixtures"]["op_zoo"] = {"kind": "tf.Module, op coverage",
                                      **op_zoo(np.random.default_rng(SEED + 99), os.path.join(FIXTURES, "op_zoo"))}
    manifest["keras_archives"] = keras_archives(rng)
    with open(os.path.join(FIXTURES, "MANIFEST.json"), "w") as f:
        json.dump(manifest, f, indent=2, sort_keys=True)
        f.write("\n")
    os.makedirs(EXAMPLES, exist_ok=True)
    digits_example(os.path.join(EXAMPLES, "digits"))


if __name__ == "__main__":
    main()
