internal import TensorCore
internal import GraphIR
internal import Foundation

extension Interpreter {
  /// One fused member computed block by block: its function and where its operands come from.
  struct Instruction {
    enum Operand {
      /// A member computed in the same segment: 0 the segment's base, i instruction i - 1.
      case register(Int)
      /// A float tensor computed before, broadcast over the base's shape: element i of the
      /// base's shape reads `values[(i / repeatCount) % period]`.
      case side(values: [Float], repeatCount: Int, period: Int)
    }
    var op: String
    var operation: FusionRule
    var operands: [Operand]
    var precision: ReducedPrecision?
  }

  /// Computes the fused members of `step` from `root`, the result of its node, and returns the
  /// results read after the step: the exported members' and the last member's, by node.
  ///
  /// The members run in segments: from a base member whose result is a float tensor, the
  /// following members whose operands are members of the segment or earlier float tensors that
  /// broadcast to the base's shape by repeating (a scalar, a bias, a per-row scale) are computed
  /// block by block, each block through all of them while it is in cache, on both cores for
  /// large tensors, into the base's elements. A member that cannot join (other shapes or types)
  /// runs its own kernel and becomes the next base.
  func runFused(
    _ step: Plan.Step, in function: Function, root: inout Value?, depth: Int,
    _ value: (Plan.Source, String) throws -> Value
  ) throws -> [(node: Int, value: Value)] {
    let members = [step.node] + step.fused.map(\.node)
    var values = [Value?](repeating: nil, count: members.count)
    values[0] = root
    root = nil  // the root is in `values` only, so that it can be updated in place
    // Whether member `index` is read by a member from `position` on, or after the step.
    var lastReader = [Int](repeating: -1, count: members.count)
    for (position, fused) in step.fused.enumerated() {
      for case .member(let index) in fused.operands { lastReader[index] = position + 1 }
    }
    let kept = Set(step.exports + [members.count - 1])
    func needed(_ index: Int, from position: Int) -> Bool {
      kept.contains(index) || lastReader[index] >= position
    }

    var base = 0
    var next = 1
    while next < members.count {
      // A segment on the base's shape, else one on the shape member `next` broadcasts its
      // operands to (a per-row scale times a per-channel one starts a layer normalization's).
      var instructions: [Instruction] = []
      var shape: Shape?
      if case .tensor(let tensor)? = values[base], case .float = tensor.storage {
        shape = tensor.shape
      }
      var ownShape = false
      for attempt in [false, true] where instructions.isEmpty {
        if attempt {
          shape = try broadcastShape(of: step.fused[next - 1], in: function, values: values, value)
          ownShape = true
        }
        guard let shape else { continue }
        while next + instructions.count < members.count,
          let instruction = try instruction(
            for: next + instructions.count, of: step, in: function, base: base, shape: shape,
            ownShape: ownShape,
            values: values, value)
        {
          instructions.append(instruction)
        }
      }
      if instructions.isEmpty {
        // Not computable block by block: the member's own kernel, on its operands' values.
        let fused = step.fused[next - 1]
        let node = function.nodes[fused.node]
        let inputs = try fused.operands.map { operand -> Value in
          switch operand {
          case .member(let index):
            guard let value = values[index] else {
              throw RuntimeError(
                code: .malformedGraph, function: function.name, node: node.name,
                message: "A fused input has no value.")
            }
            return value
          case .outside(let source): return try value(source, node.name)
          }
        }
        values[next] = try runtimeErrors(function, node) {
          guard
            let result = try execute(
              node, id: NodeID(fused.node), in: function, inputs: inputs, depth: depth
            )
            .first
          else {
            throw KernelError("The kernel gave no result.")
          }
          return result
        }
        base = next
        next += 1
      } else {
        let end = next + instructions.count
        let exports = (next..<(end - 1)).filter { needed($0, from: end) }
        let dtypes = (next..<end).map {
          Rounding.declaredType(of: function.nodes[members[$0]]) ?? .float32
        }
        let computed: [Value]
        if ownShape {
          var none: Value? = nil
          computed = runSegment(
            instructions, shape: shape ?? Shape([]), base: &none, mode: .none,
            exports: exports.map { $0 - next },
            dtypes: dtypes)
        } else {
          computed = runSegment(
            instructions, shape: shape ?? Shape([]), base: &values[base],
            mode: needed(base, from: end) ? .read : .inPlace,
            exports: exports.map { $0 - next }, dtypes: dtypes)
        }
        for (index, result) in zip(exports + [end - 1], computed) { values[index] = result }
        base = end - 1
        next = end
      }
      for index in 0..<next where !needed(index, from: next) { values[index] = nil }
    }
    return (step.exports + [members.count - 1]).compactMap { index in
      values[index].map { (members[index], $0) }
    }
  }

  /// Member `index` of `step` as an instruction of a segment of `shape` after base member
  /// `base` (whose elements the segment starts from, unless it has its `ownShape`), or `nil`
  /// when it cannot be computed block by block there.
  private func instruction(
    for index: Int, of step: Plan.Step, in function: Function, base: Int, shape: Shape,
    ownShape: Bool, values: [Value?],
    _ value: (Plan.Source, String) throws -> Value
  ) throws -> Instruction? {
    let fused = step.fused[index - 1]
    let node = function.nodes[fused.node]
    var operands: [Instruction.Operand] = []
    for (position, operand) in fused.operands.enumerated() {
      let side: Value
      switch operand {
      case .member(let member) where member > base || (member == base && !ownShape):
        operands.append(.register(member - base))
        continue
      case .member(let member):
        guard let earlier = values[member] else { return nil }
        side = earlier
      case .outside(let source):
        side = try runtimeErrors(function, node) { try value(source, node.name) }
      }
      guard case .tensor(let tensor) = side, case .float(let elements) = tensor.storage,
        let (repeatCount, period) = Self.broadcastPattern(of: tensor.shape, over: shape),
        node.op != "BiasAdd" || (position == 1 && tensor.shape.rank == 1)
      else { return nil }
      operands.append(.side(values: elements, repeatCount: repeatCount, period: period))
    }
    // Connected to the segment, or the binary op that starts one of its own shape; the operand
    // of a unary function or cast is a member.
    let connected = operands.contains { if case .register = $0 { true } else { false } }
    guard connected || (ownShape && index == base + 1 && operands.count == 2) else { return nil }
    if case .side? = operands.first, operands.count == 1 { return nil }
    let precision =
      movesElements(node.op) ? nil : Rounding.declaredType(of: node).flatMap(ReducedPrecision.init)
    return Instruction(
      op: node.op, operation: fused.operation, operands: operands, precision: precision)
  }

  /// The shape member `fused`'s operands broadcast to, when they are all float tensors computed
  /// before it (its own segment's shape).
  private func broadcastShape(
    of fused: Plan.Fused, in function: Function, values: [Value?],
    _ value: (Plan.Source, String) throws -> Value
  ) throws -> Shape? {
    guard fused.operands.count == 2 else { return nil }
    var shapes: [Shape] = []
    for operand in fused.operands {
      let operandValue: Value?
      switch operand {
      case .member(let member): operandValue = values[member]
      case .outside(let source): operandValue = try value(source, function.nodes[fused.node].name)
      }
      guard case .tensor(let tensor)? = operandValue, case .float = tensor.storage else {
        return nil
      }
      shapes.append(tensor.shape)
    }
    return try? StridedWalk.broadcastShape(shapes)
  }

  /// How a tensor of shape `side` repeats when broadcast over `shape` without enlarging it:
  /// element i of `shape` reads side element (i / repeatCount) % period. `nil` when its
  /// dimensions other than 1 are not one run of `shape`'s dimensions in place (or do not fit).
  static func broadcastPattern(of side: Shape, over shape: Shape) -> (
    repeatCount: Int, period: Int
  )? {
    let dimensions = shape.dimensions
    guard side.rank <= dimensions.count else { return nil }
    let aligned = [Int](repeating: 1, count: dimensions.count - side.rank) + side.dimensions
    let spread = aligned.indices.filter { aligned[$0] != 1 }
    guard spread.allSatisfy({ aligned[$0] == dimensions[$0] }) else { return nil }
    guard let first = spread.first, let last = spread.last else { return (1, 1) }
    // Dimensions of size 1 in `shape` inside the run do not break it.
    guard (first...last).allSatisfy({ aligned[$0] == dimensions[$0] }) else { return nil }
    return (dimensions[(last + 1)...].reduce(1, *), dimensions[first...last].reduce(1, *))
  }

  /// What a segment does with its base's elements.
  enum SegmentBase {
    /// Reads them and writes the last result over them.
    case inPlace
    /// Reads them; the last result is a new array.
    case read
    /// Has none (a segment of its own shape); the last result is a new array.
    case none
  }

  /// Runs a segment's instructions block by block over `shape` and returns the results of the
  /// exported instructions (by position) and of the last one.
  private func runSegment(
    _ instructions: [Instruction], shape: Shape, base: inout Value?, mode: SegmentBase,
    exports: [Int], dtypes: [DType]
  ) -> [Value] {
    let count = shape.elementCount ?? 0
    var elements: [Float]
    var kept: [Float] = []
    switch mode {
    case .inPlace:
      guard case .tensor(var tensor)? = base, case .float(let values) = tensor.storage else {
        return []
      }
      // Moved out of `base` and `tensor`, so that they are only in `elements`.
      base = nil
      tensor.storage = .float([])
      elements = values
    case .read:
      guard case .tensor(let tensor)? = base, case .float(let values) = tensor.storage else {
        return []
      }
      kept = values
      elements = [Float](repeating: 0, count: count)
    case .none:
      elements = [Float](repeating: 0, count: count)
    }
    // The exported members' elements, written block by block (moved into arrays at the end).
    let exported = exports.map { _ in UnsafeMutablePointer<Float>.allocate(capacity: count) }
    let start = profile.map { _ in ContinuousClock.now }
    let blockSize = 8192
    let blocks = (count + blockSize - 1) / blockSize
    let parts = count >= 1 << 18 ? ProcessInfo.processInfo.activeProcessorCount : 1
    // Where each instruction writes a block: the last into the result, an exported one into its
    // export, the others into a register of their own (by position, -1 for none).
    let exportOf = instructions.indices.map { exports.firstIndex(of: $0) ?? -1 }
    kept.withUnsafeBufferPointer { kept in
      elements.withUnsafeMutableBufferPointer { elements in
        guard count > 0 else { return }
        // Each part reads and writes its own blocks.
        nonisolated(unsafe) let output = elements.start
        nonisolated(unsafe) let input =
          mode == .read ? kept.start : UnsafePointer(elements.start)
        nonisolated(unsafe) let exportTargets = exported
        DispatchQueue.concurrentPerform(iterations: parts) { part in
          var registers = [Float](repeating: 0, count: instructions.count * blockSize)
          registers.withUnsafeMutableBufferPointer { registers in
            let scratch = registers.start
            var targets = [UnsafeMutablePointer<Float>](
              repeating: output, count: instructions.count)
            for block in stride(from: part, to: blocks, by: parts) {
              let offset = block * blockSize
              for position in instructions.indices {
                targets[position] =
                  position == instructions.count - 1
                  ? output + offset
                  : exportOf[position] >= 0
                    ? exportTargets[exportOf[position]] + offset : scratch + position * blockSize
              }
              Self.runBlock(
                instructions, base: input + offset, targets: targets, offset: offset,
                length: Swift.min(blockSize, count - offset))
            }
          }
        }
      }
    }
    if let profile, let start {
      let share = (ContinuousClock.now - start) / instructions.count
      for instruction in instructions { profile.add(instruction.op, share) }
    }
    let results = zip(exports, exported).map { index, pointer in
      let values = [Float](unsafeUninitializedCapacity: count) { buffer, initialized in
        buffer.start.moveInitialize(from: pointer, count: count)
        initialized = count
      }
      pointer.deallocate()
      return Value.tensor(Tensor(dtype: dtypes[index], shape: shape, storage: .float(values)))
    }
    return results + [
      .tensor(Tensor(dtype: dtypes[dtypes.count - 1], shape: shape, storage: .float(elements)))
    ]
  }

  /// Computes one block of `length` elements from element `offset` on: instruction j into
  /// `targets[j]`, reading the base's block at `base` and the targets before it.
  private static func runBlock(
    _ instructions: [Instruction], base: UnsafePointer<Float>,
    targets: [UnsafeMutablePointer<Float>], offset: Int,
    length: Int
  ) {
    // A register operand's block: 0 the base's, i instruction i - 1's.
    func block(_ register: Int) -> UnsafePointer<Float> {
      register == 0 ? base : UnsafePointer(targets[register - 1])
    }
    for (position, instruction) in instructions.enumerated() {
      let output = targets[position]
      switch (instruction.operation, instruction.operands[0]) {
      case (.unary(let function), .register(let register)):
        function.apply(block(register), output, length)
      case (.floatCast, .register(let register)):
        output.update(from: block(register), count: length)
      case (.binary(let function), _):
        // In runs over which each operand is contiguous or one repeated value.
        let (a, b) = (instruction.operands[0], instruction.operands[1])
        withElements(of: a, block: block) { firstBase in
          withElements(of: b, block: block) { secondBase in
            var start = 0
            while start < length {
              let first = span(a, at: offset + start, base: firstBase)
              let second = span(b, at: offset + start, base: secondBase)
              let run = Swift.min(length - start, first.limit, second.limit)
              function.apply(
                first.pointer + (first.isRegister ? start : 0), first.stride,
                second.pointer + (second.isRegister ? start : 0), second.stride,
                into: output + start, count: run)
              start += run
            }
          }
        }
      default: preconditionFailure("unary functions and casts read a member")
      }
      instruction.precision?.round(UnsafeMutableBufferPointer(start: output, count: length))
    }
  }

  /// Runs `body` with the address `operand`'s elements start at: its block for a register, the
  /// side values for a side operand (valid only inside `body`).
  private static func withElements<R>(
    of operand: Instruction.Operand, block: (Int) -> UnsafePointer<Float>,
    _ body: (UnsafePointer<Float>) -> R
  ) -> R {
    switch operand {
    case .register(let register): return body(block(register))
    case .side(let values, _, _): return values.withUnsafeBufferPointer { body($0.start) }
    }
  }

  /// Where `operand`'s element `index` (of the tensor) is, from `base` (see
  /// ``withElements(of:block:_:)``), and how the following ones lie: stride 1 (contiguous, for
  /// `limit` elements) or 0 (the same value, `limit` times). A register's pointer is its block's
  /// start.
  private static func span(
    _ operand: Instruction.Operand, at index: Int, base: UnsafePointer<Float>
  ) -> (pointer: UnsafePointer<Float>, stride: Int, limit: Int, isRegister: Bool) {
    switch operand {
    case .register: return (base, 1, .max, true)
    case .side(_, let repeatCount, let period):
      return repeatCount == 1
        ? (
          base + index % period, period == 1 ? 0 : 1, period == 1 ? .max : period - index % period,
          false
        )
        : (base + (index / repeatCount) % period, 0, repeatCount - index % repeatCount, false)
    }
  }
}
