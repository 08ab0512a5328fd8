// libFuzzer target: feeds each input to both in-memory loaders. FileError is the only
// acceptable failure; any other exception, crash, leak or sanitizer report is a finding.
// Build and run with tests/fuzz/build_and_run.sh (see README.md).
#include <cstddef>
#include <cstdint>

#include "framework/npz.hpp"

namespace npz = tapegrad::npz;

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  try {
    for (const auto& [name, array] : npz::load_npz_from_memory(data, size, "fuzz"))
      (void)array.to_vector<double>();  // exercises conversion; throws for int64
  } catch (const tapegrad::FileError&) {
  }
  try {
    (void)npz::load_npy_from_memory(data, size, "fuzz").to_vector<std::int64_t>();
  } catch (const tapegrad::FileError&) {
  }
  return 0;
}
