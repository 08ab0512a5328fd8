// tapegrad — which build of the vector math a process uses (vector_math.hpp).
#include "framework/vector_math.hpp"

#include "framework/arch_builds.hpp"

namespace tapegrad::detail {

// Each defined by one compilation of vector_math.inc.
VectorMaths vector_maths_native();
#if defined(TAPEGRAD_VMATH_X86)
VectorMaths vector_maths_avx2();
VectorMaths vector_maths_avx512();
#endif

template <class T>
const std::vector<const VectorMath<T>*>& vector_maths() {
#if defined(TAPEGRAD_VMATH_X86)
  static const std::vector<const VectorMath<T>*> all =
      runnable_builds<T>(&vector_maths_native, &vector_maths_avx512, &vector_maths_avx2);
#else
  static const std::vector<const VectorMath<T>*> all =
      runnable_builds<T>(&vector_maths_native, nullptr, nullptr);
#endif
  return all;
}

template <class T>
const VectorMath<T>& choose_vector_math(const char* gemm_kernel) {
  return choose_build(vector_maths<T>(), gemm_kernel);
}

template <class T>
const VectorMath<T>& vector_math() {
  static const VectorMath<T>& chosen = choose_vector_math<T>(process_build_name<T>());
  return chosen;
}

template const std::vector<const VectorMath<float>*>& vector_maths<float>();
template const std::vector<const VectorMath<double>*>& vector_maths<double>();
template const VectorMath<float>& choose_vector_math<float>(const char*);
template const VectorMath<double>& choose_vector_math<double>(const char*);
template const VectorMath<float>& vector_math<float>();
template const VectorMath<double>& vector_math<double>();

}  // namespace tapegrad::detail
