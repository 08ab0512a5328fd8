// tapegrad — element types: one enum for tensors and for the .npy/.npz reader and writer.
//
// Tensors are Float32 or Float64 (every op dispatches on these two; framework/dispatch.hpp
// rejects the others). npz arrays may also be Int32, Int64, UInt8 or Bool (token ids, masks,
// step counters in checkpoints). Depends on nothing, so framework/npz.hpp stays independent of
// the tensor class.
#pragma once

#include <type_traits>

namespace tapegrad {

enum class DType { Float32, Float64, Int32, Int64, UInt8, Bool };

/// NumPy's name of a dtype: "float32", "float64", "int32", "int64", "uint8" or "bool".
/// (npz::dtype_name is this same function.)
constexpr const char* dtype_name(DType dtype) {
  switch (dtype) {
    case DType::Float32: return "float32";
    case DType::Float64: return "float64";
    case DType::Int32: return "int32";
    case DType::Int64: return "int64";
    case DType::UInt8: return "uint8";
    case DType::Bool: return "bool";
  }
  return "unknown";
}

/// Whether tensors can hold this dtype (float32 or float64).
constexpr bool is_tensor_dtype(DType dtype) {
  return dtype == DType::Float32 || dtype == DType::Float64;
}

}  // namespace tapegrad
