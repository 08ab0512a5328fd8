// tapegrad — parameter initialisation like torch.nn.init, from a seedable Generator.
//
// All functions overwrite a leaf tensor's values in place (no autograd) and draw the numbers in
// row-major order, so the same Generator seed gives the same parameters.
//
// The PyTorch defaults the layers use:
//   Linear        weight, bias ~ U(−1/√fan_in, 1/√fan_in)   (kaiming_uniform_(a = √5) for the
//                 weight gives exactly that bound; torch uses the same bound for the bias)
//   RNN/GRU/LSTM  every parameter ~ U(−1/√H, 1/√H)
//   Embedding     weight ~ N(0, 1)
#pragma once

#include "framework/random.hpp"
#include "framework/tensor.hpp"

namespace tapegrad::init {

/// fan_in of a weight (out, in, ...): in · (product of the remaining dims).
std::size_t fan_in(const Tensor& weight);

/// t ~ U(lo, hi).
void uniform_(Tensor& t, double lo, double hi, Generator& gen = default_generator());
/// t ~ N(mean, std²).
void normal_(Tensor& t, double mean = 0.0, double std = 1.0, Generator& gen = default_generator());
/// torch.nn.init.kaiming_uniform_ (leaky_relu gain, fan_in mode):
/// bound = gain · √(3 / fan_in), gain = √(2 / (1 + a²)). With a = √5: bound = 1/√fan_in.
void kaiming_uniform_(Tensor& weight, double a = 0.0, Generator& gen = default_generator());

}  // namespace tapegrad::init
