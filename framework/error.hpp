// tapegrad — typed exceptions.
//
// Every error tapegrad raises derives from tapegrad::Error (itself a std::runtime_error), so a
// program can catch them all at once. The message always names the op (or file) and the shapes
// (or field) involved: "matmul: inner dimensions differ: (2, 3) @ (4, 5)".
#pragma once

#include <stdexcept>
#include <string>

namespace tapegrad {

/// Base of every exception tapegrad throws.
class Error : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

/// Operand shapes do not fit the op (broadcasting, matmul, reshape, ...).
class ShapeError : public Error {
 public:
  using Error::Error;
};

/// Operands of different dtypes were mixed (tapegrad never promotes silently).
class DTypeError : public Error {
 public:
  using Error::Error;
};

/// An index is out of range (slicing, index_select, gather, cross_entropy targets).
class IndexError : public Error {
 public:
  using Error::Error;
};

/// Misuse of autograd: backward on a non-scalar without a seed, through a freed tape, ...
class AutogradError : public Error {
 public:
  using Error::Error;
};

/// Anomaly mode found a NaN or Inf (see framework/anomaly in tape.hpp).
class AnomalyError : public AutogradError {
 public:
  using AutogradError::AutogradError;
};

/// A file could not be read or written, or its contents are invalid. The message names the
/// file and, where it applies, the field (npz entry, header key).
class FileError : public Error {
 public:
  using Error::Error;
};

/// An argument has an invalid value (negative size, unknown option, ...).
class ValueError : public Error {
 public:
  using Error::Error;
};

/// Memory for a tensor could not be allocated (a std::bad_alloc inside tensor creation or an
/// op's forward). The message names the op, the dtype and the shape. Shapes above the element
/// limit never get this far: they are a ShapeError before any allocation.
class MemoryError : public Error {
 public:
  using Error::Error;
};

}  // namespace tapegrad
