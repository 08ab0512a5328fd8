// tapegrad's xtensor configuration: every tapegrad header includes this first, before any xtensor
// header (tensor.hpp does, and so does every file that includes xtensor directly).
//
// Why: with XTENSOR_USE_XSIMD, xtensor's default allocator is
//   xsimd::aligned_allocator<T, xsimd::default_arch::alignment()>
// and that alignment depends on the instruction set the file is compiled for (16 for SSE, 32 for
// AVX2, 64 for AVX-512). xt::xarray<T> is then a different type in a library built with
// -march=native and in a program built with default flags, and functions taking or returning
// xarrays (Tensor::data<T>(), gather, ...) no longer link ("undefined reference to
// tapegrad::Tensor::data<float>()"). Fixing the alignment at 64 -- enough for every x86-64
// instruction set, AVX-512 included -- makes the public types the same whatever the flags.
//
// A program that includes an xtensor header before any tapegrad header gets xtensor's default
// instead; the static_assert below then stops the build with a message rather than a link error.
// (CMake cannot export a function-like macro as a compile definition, so the define lives here.)
#pragma once

#ifndef XTENSOR_USE_XSIMD
#define XTENSOR_USE_XSIMD
#endif

#include <type_traits>

#include <xsimd/xsimd.hpp>

#ifndef XTENSOR_DEFAULT_ALLOCATOR
#define XTENSOR_DEFAULT_ALLOCATOR(T) xsimd::aligned_allocator<T, 64>
#endif
#ifndef XTENSOR_DEFAULT_ALIGNMENT
#define XTENSOR_DEFAULT_ALIGNMENT 64
#endif

#include <xtensor/xarray.hpp>

namespace tapegrad::detail {
// The ABI check: tapegrad's library was compiled with exactly this allocator.
static_assert(std::is_same_v<xt::xarray<float>::allocator_type, xsimd::aligned_allocator<float, 64>>,
              "tapegrad: include tapegrad headers before any xtensor header, or define "
              "XTENSOR_DEFAULT_ALLOCATOR(T) as xsimd::aligned_allocator<T, 64>");
static_assert(XTENSOR_DEFAULT_ALIGNMENT == 64,
              "tapegrad: include tapegrad headers before any xtensor header, or define "
              "XTENSOR_DEFAULT_ALIGNMENT as 64");
}  // namespace tapegrad::detail
