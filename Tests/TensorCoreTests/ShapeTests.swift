import Testing
import TensorCore

@Suite("Shape and DType")
struct ShapeTests {
  @Test("Element counts refuse unknown dimensions and overflow instead of trapping")
  func elementCounts() {
    #expect(Shape([]).elementCount == 1)
    #expect(Shape([2, 3, 0]).elementCount == 0)
    #expect(Shape([-1, 784]).elementCount == nil)
    #expect(Shape([1 << 40, 1 << 40]).elementCount == nil)
    #expect(Shape([1 << 61]).byteCount(of: .float32) == nil)
    #expect(Shape([4, 5]).byteCount(of: .bfloat16) == 40)
    #expect(Shape([4]).byteCount(of: .string) == nil)
    #expect(Shape([-1, 28, 28, 1]).description == "[?, 28, 28, 1]")
  }

  @Test("Dtype numbers are TensorFlow's")
  func dtypeNumbers() {
    #expect(DType.float32.rawValue == 1)
    #expect(DType.bfloat16.rawValue == 14)
    #expect(DType.float16.rawValue == 19)
    #expect(DType.resource.rawValue == 20)
    #expect(DType(rawValue: 99) == nil)
    #expect(DType.float16.byteSize == 2)
    #expect(DType.int64.name == "int64")
  }

  @Test("Small integer types wrap as C conversions to them do")
  func smallIntegers() {
    #expect(DType.uint8.wrapping(300) == 44 && DType.uint8.wrapping(-1) == 255)
    #expect(DType.int8.wrapping(128) == -128 && DType.int8.wrapping(-129) == 127)
    #expect(DType.uint16.wrapping(70000) == 4464 && DType.int16.wrapping(90000) == 24464)
    #expect(DType.int8.wrapping(-128) == -128 && DType.uint8.wrapping(255) == 255)
    #expect(DType.int32.smallIntegerRange == nil && DType.int32.wrapping(7) == 7)
  }
}
