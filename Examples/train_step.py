#!/usr/bin/env python3
"""Fine-tunes a SavedModel written by `tfmp finetune --export-train-step` with TensorFlow, on any
device TensorFlow has (a GPU's Tensor Cores run the float16 matrix products), in a plain loop:

  python Examples/train_step.py MODEL DATA.npz OUTPUT [--epochs 1] [--batch-size 32]

DATA.npz holds one array per input of the train_step signature, by name, and the targets under
`y`, samples along the first dimension. Each call of `train_step` runs one step (forward pass,
scaled loss, gradients, optimizer and loss-scale updates) and updates the model's variables in
place; OUTPUT is the model saved again with its trained weights and every signature.
"""
import argparse

import numpy as np
import tensorflow as tf


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("model")
    parser.add_argument("data")
    parser.add_argument("output")
    parser.add_argument("--epochs", type=int, default=1)
    parser.add_argument("--batch-size", type=int, default=32)
    args = parser.parse_args()
    model = tf.saved_model.load(args.model)
    step = model.signatures["train_step"]
    with np.load(args.data) as data:
        arrays = {name: data[name] for name in data.files}
    count = len(arrays["y"])
    for epoch in range(1, args.epochs + 1):
        losses, skipped = [], 0
        for start in range(0, count, args.batch_size):
            batch = {name: tf.constant(values[start:start + args.batch_size]) for name, values in arrays.items()}
            result = step(**batch)
            losses.append(float(result["loss"]))
            skipped += int(result["skipped"])
        print(f"epoch {epoch}: loss {np.mean(losses):.4f}, {skipped} steps skipped, "
              f"loss scale {float(result['loss_scale']):g}")
    tf.saved_model.save(model, args.output, signatures=dict(model.signatures))
    print(f"wrote {args.output}")


if __name__ == "__main__":
    main()
