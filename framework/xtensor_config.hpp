// tapegrad's xtensor configuration: every tapegrad header includes this first, before any xtensor
// header (tensor.hpp does, and so does every file that includes xtensor directly).
//
// Why: with XTENSOR_USE_XSIMD, xtensor's default allocator is
//   xsimd::aligned_allocator<T, xsimd::default_arch::alignment()>
// and that alignment depends on the instruction set the file is compiled for (16 for SSE, 32 for
// AVX2, 64 for AVX-512). xt::xarray<T> is then a different type in a library built with
// -march=native and in a program built with default flags, and functions taking or returning
// xarrays (Tensor::data<T>(), gather, ...) no longer link ("undefined reference to
// tapegrad::Tensor::data<float>()"). tapegrad's own allocator, 64-byte aligned -- enough for every
// x86-64 instruction set, AVX-512 included -- makes the public types the same whatever the flags.
//
// A program that includes an xtensor header before any tapegrad header gets xtensor's default
// instead; the static_assert below then stops the build with a message rather than a link error.
// (CMake cannot export a function-like macro as a compile definition, so the define lives here.)
#pragma once

#ifndef XTENSOR_USE_XSIMD
#define XTENSOR_USE_XSIMD
#endif

#include <cstddef>
#include <type_traits>

#include <xsimd/xsimd.hpp>

namespace tapegrad::detail {
// Every tensor's storage comes from here (framework/memory_pool.cpp): 64-byte aligned blocks,
// recycled through a small per-thread cache of freed blocks by size class, so that a training
// step's many same-sized temporaries do not go to malloc and free every time (allocation was
// ~half of the tape's per-op cost). Defined in the library, so the type is the same for every
// compiler flag and every program shares the library's one implementation.
void* pool_allocate(std::size_t bytes);                 // throws std::bad_alloc
void pool_deallocate(void* p, std::size_t bytes) noexcept;
/// This thread keeps no cache: what it frees goes straight back to malloc. For a long-lived
/// worker (the engine's helper thread, framework/parallel.cpp) that mostly frees blocks other
/// threads allocated: cached, they would pile up where no allocation takes them back.
void pool_no_cache_on_this_thread() noexcept;

/// The allocator of every xt::xarray in tapegrad (XTENSOR_DEFAULT_ALLOCATOR below).
template <class T>
struct pool_allocator {
  using value_type = T;
  using size_type = std::size_t;
  using difference_type = std::ptrdiff_t;
  using pointer = T*;
  using const_pointer = const T*;
  using reference = T&;
  using const_reference = const T&;
  template <class U>
  struct rebind {
    using other = pool_allocator<U>;
  };
  pool_allocator() noexcept = default;
  template <class U>
  pool_allocator(const pool_allocator<U>&) noexcept {}
  T* allocate(std::size_t n) { return static_cast<T*>(pool_allocate(n * sizeof(T))); }
  void deallocate(T* p, std::size_t n) noexcept { pool_deallocate(p, n * sizeof(T)); }
  template <class U>
  bool operator==(const pool_allocator<U>&) const noexcept { return true; }
  template <class U>
  bool operator!=(const pool_allocator<U>&) const noexcept { return false; }
};
}  // namespace tapegrad::detail

#ifndef XTENSOR_DEFAULT_ALLOCATOR
#define XTENSOR_DEFAULT_ALLOCATOR(T) tapegrad::detail::pool_allocator<T>
#endif
#ifndef XTENSOR_DEFAULT_ALIGNMENT
#define XTENSOR_DEFAULT_ALIGNMENT 64
#endif

#include <xtensor/xarray.hpp>

namespace tapegrad::detail {
// The ABI check: tapegrad's library was compiled with exactly this allocator.
static_assert(std::is_same_v<xt::xarray<float>::allocator_type, pool_allocator<float>>,
              "tapegrad: include tapegrad headers (or framework/xtensor_config.hpp) before any "
              "xtensor header");
static_assert(XTENSOR_DEFAULT_ALIGNMENT == 64,
              "tapegrad: include tapegrad headers (or framework/xtensor_config.hpp) before any "
              "xtensor header");
}  // namespace tapegrad::detail
