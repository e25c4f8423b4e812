internal import Foundation
internal import GraphIR
internal import TensorCore

/// Object detection's post-processing: greedy non-maximum suppression, as
/// `tf.image.non_max_suppression` (V2, V3), `..._padded` (V4) and `..._with_scores` (V5, soft
/// suppression with a Gaussian weight) emit it.
enum DetectionKernels {
  static func register(in registry: inout OpRegistry) {
    let threshold = OpSchema.ElementType.attribute("T_threshold", defaultType: .float32)
    let element = OpSchema.ElementType.attribute("T", defaultType: .float32)
    let boxes: [OpSchema.Argument] = [
      .init("boxes", type: element), .init("scores", type: element),
      .fixed("max_output_size", .int32),
    ]
    let selected = OpSchema.Argument.fixed("selected_indices", .int32)
    let valid = OpSchema.Argument.fixed("valid_outputs", .int32)
    let padding = OpSchema.Attribute.bool("pad_to_max_output_size", false)
    registry.add(
      "NonMaxSuppressionV2", inputs: boxes + [.init("iou_threshold", type: threshold)],
      outputs: [selected]
    ) { context, inputs in
      [try suppress(context, inputs, scoreThreshold: -.infinity, sigma: 0, padded: false).indices]
    }
    registry.add(
      "NonMaxSuppressionV3",
      inputs: boxes + ["iou_threshold", "score_threshold"].map { .init($0, type: threshold) },
      outputs: [selected]
    ) { context, inputs in
      [
        try suppress(
          context, inputs, scoreThreshold: try scalar(inputs, 4), sigma: 0, padded: false
        ).indices
      ]
    }
    registry.add(
      "NonMaxSuppressionV4",
      inputs: boxes + ["iou_threshold", "score_threshold"].map { .init($0, type: threshold) },
      outputs: [selected, valid], attributes: [padding]
    ) { context, inputs in
      let found = try suppress(
        context, inputs, scoreThreshold: try scalar(inputs, 4), sigma: 0,
        padded: try context.bool("pad_to_max_output_size"))
      return [found.indices, found.count]
    }
    registry.add(
      "NonMaxSuppressionV5",
      inputs: boxes
        + ["iou_threshold", "score_threshold", "soft_nms_sigma"].map { .init($0, type: element) },
      outputs: [selected, .init("selected_scores", type: element), valid], attributes: [padding]
    ) { context, inputs in
      let found = try suppress(
        context, inputs, scoreThreshold: try scalar(inputs, 4), sigma: try scalar(inputs, 5),
        padded: try context.bool("pad_to_max_output_size"))
      return [found.indices, found.scores, found.count]
    }
  }

  private static func scalar(_ inputs: [Tensor], _ index: Int) throws -> Float {
    guard let value = try Kernels.input(inputs, index).requireFloats().first else {
      throw KernelError("Input \(index) must be a scalar.")
    }
    return value
  }

  /// Boxes [N, 4] (two opposite corners, y then x), scores [N], at most `max_output_size`
  /// kept: repeatedly the best-scoring candidate above `scoreThreshold` is kept, unless a kept
  /// box overlaps it by more than the IoU threshold (hard suppression); with `sigma` > 0 each
  /// kept box instead weighs its score down by exp(-IoU^2 / (2 sigma)) and it competes again
  /// (TensorFlow's soft NMS). Ties go to the lower index. `padded` fills the outputs with zeros
  /// up to `max_output_size`.
  static func suppress(
    _ context: KernelContext, _ inputs: [Tensor], scoreThreshold: Float, sigma: Float,
    padded: Bool
  ) throws -> (indices: Tensor, scores: Tensor, count: Tensor) {
    let (boxTensor, scoreTensor) = (try Kernels.input(inputs, 0), try Kernels.input(inputs, 1))
    let count = boxTensor.shape.dimensions.first ?? 0
    guard boxTensor.shape.rank == 2, boxTensor.shape.dimensions[1] == 4,
      scoreTensor.shape.dimensions == [count]
    else {
      throw KernelError(
        "Non-maximum suppression needs boxes [N, 4] and scores [N], got \(boxTensor.shape) and "
          + "\(scoreTensor.shape).")
    }
    guard let limit = try Kernels.input(inputs, 2).requireIntegers().first, limit >= 0 else {
      throw KernelError("max_output_size must be a non-negative scalar.")
    }
    let overlapLimit = try scalar(inputs, 3)
    guard (0...1).contains(overlapLimit), sigma >= 0 else {
      throw KernelError("iou_threshold must be in [0, 1] and soft_nms_sigma non-negative.")
    }
    let (corners, scores) = (try boxTensor.requireFloats(), try scoreTensor.requireFloats())
    func overlap(_ i: Int, _ j: Int) -> Float {
      func extent(_ box: Int) -> (low: (Float, Float), high: (Float, Float), area: Float) {
        let c = corners[(4 * box)..<(4 * box + 4)].map { $0 }
        let low = (Swift.min(c[0], c[2]), Swift.min(c[1], c[3]))
        let high = (Swift.max(c[0], c[2]), Swift.max(c[1], c[3]))
        return (low, high, (high.0 - low.0) * (high.1 - low.1))
      }
      let (a, b) = (extent(i), extent(j))
      guard a.area > 0, b.area > 0 else { return 0 }
      let height = Swift.max(0, Swift.min(a.high.0, b.high.0) - Swift.max(a.low.0, b.low.0))
      let width = Swift.max(0, Swift.min(a.high.1, b.high.1) - Swift.max(a.low.1, b.low.1))
      let intersection = height * width
      return intersection / (a.area + b.area - intersection)
    }
    let soft = sigma > 0
    let scale = soft ? -0.5 / sigma : 0
    // Candidates: box, current score, how many kept boxes have weighed on it already.
    var candidates = (0..<count).filter { scores[$0] > scoreThreshold }.map {
      (box: $0, score: scores[$0], checked: 0)
    }
    var kept: [(box: Int, score: Float)] = []
    while kept.count < limit,
      let best = candidates.indices.max(by: { a, b in
        let (x, y) = (candidates[a], candidates[b])
        return x.score < y.score || (x.score == y.score && x.box > y.box)
      })
    {
      var candidate = candidates.remove(at: best)
      let original = candidate.score
      var suppressed = false
      // Newest kept boxes first, each weighing on a candidate once.
      for index in stride(from: kept.count - 1, through: candidate.checked, by: -1) {
        let similarity = overlap(candidate.box, kept[index].box)
        if !soft && similarity > overlapLimit {
          suppressed = true
          break
        }
        if soft { candidate.score *= exp(scale * similarity * similarity) }
        if candidate.score <= scoreThreshold { break }
      }
      candidate.checked = kept.count
      guard !suppressed else { continue }
      if candidate.score == original {
        kept.append((candidate.box, candidate.score))
      } else if candidate.score > scoreThreshold {
        candidates.append(candidate)
      }
    }
    let size = padded ? try context.allocating([limit], .int32).dimensions[0] : kept.count
    let indices = kept.map { Int32($0.box) } + Array(repeating: 0, count: size - kept.count)
    let keptScores = kept.map(\.score) + Array(repeating: 0, count: size - kept.count)
    return (
      Tensor(dtype: .int32, shape: Shape([size]), storage: .int32(indices)),
      Tensor(dtype: scoreTensor.dtype, shape: Shape([size]), storage: .float(keptScores)),
      Tensor(dtype: .int32, shape: Shape([]), storage: .int32([Int32(kept.count)]))
    )
  }
}
