// tapegrad — GRUCell and GRU (see gru.hpp). Shapes: B batch, T time, H hidden.
#include "layers/gru.hpp"

#include <fmt/format.h>

#include <string>

#include "framework/dispatch.hpp"
#include "framework/ops.hpp"
#include "layers/fast/gru_fused.hpp"
#include "layers/init_params.hpp"
#include "layers/rnn_cell.hpp"

namespace tapegrad {

namespace {

/// The hidden-state half of a GRU step, shared by GRUCell and every layer of GRU. The input
/// half arrives precomputed as gi = x W_ihᵀ + b_ih (B, 3H), so that GRU can compute it for all
/// T steps with one GEMM. For reset-before, W_hh and b_hh are split once here, not every step.
class Recurrent {
 public:
  Recurrent(const Tensor& weight_hh, const Tensor& bias_hh, bool reset_after)
      : reset_after_(reset_after) {
    if (reset_after) {
      w_ = weight_hh;  // (3H, H)
      b_ = bias_hh;    // (3H)
    } else {
      const std::size_t H = weight_hh.size(1);
      w_ = narrow(weight_hh, 0, 0, 2 * H);     // (2H, H): W_hr | W_hz
      b_ = narrow(bias_hh, 0, 0, 2 * H);       // (2H)
      w_hn_ = narrow(weight_hh, 0, 2 * H, H);  // (H, H)
      b_hn_ = narrow(bias_hh, 0, 2 * H, H);    // (H)
    }
  }

  /// gi (B, 3H), h (B, H) → the step's gates and h'.
  GRUCell::Step step(const Tensor& gi, const Tensor& h) const {
    // gi = W_i x + b_i for the three gates, rows r | z | n (computed for all steps at once).
    const std::vector<Tensor> x_part = chunk(gi, 3, -1);
    const Tensor &x_r = x_part[0], &x_z = x_part[1], &x_n = x_part[2];  // (B, H) each
    // The hidden state's part: W_h h + b_h for r and z (and n when the reset acts after it).
    const std::vector<Tensor> h_part = chunk(linear(h, w_, b_), reset_after_ ? 3 : 2, -1);
    const Tensor &h_r = h_part[0], &h_z = h_part[1];

    Tensor r = sigmoid(x_r + h_r);  // reset gate
    Tensor z = sigmoid(x_z + h_z);  // update gate (z = 1 keeps the old state)
    Tensor n = reset_after_ ? tanh(x_n + r * h_part[2])                  // r ⊙ (W_hn h + b_hn)
                            : tanh(x_n + linear(r * h, w_hn_, b_hn_));  // W_hn (r ⊙ h) + b_hn
    Tensor h_new = (1.0 - z) * n + z * h;  // h' = (1 − z) ⊙ n + z ⊙ h
    return {r, z, n, h_new};
  }

 private:
  bool reset_after_;
  Tensor w_, b_;        // reset-after: W_hh, b_hh; reset-before: their r|z rows
  Tensor w_hn_, b_hn_;  // reset-before only
};

}  // namespace

// ---- GRUCell ------------------------------------------------------------------------------------

GRUCell::GRUCell(const GRUCellOptions& opts, Generator& gen) : options(opts) {
  // gate rows r | z | n; every parameter ~ U(±1/√H) (layers/init_params.hpp)
  auto p = detail::register_cell(*this, "GRUCell", opts.input_size(), opts.hidden_size(), 3, gen);
  weight_ih = p.weight_ih, weight_hh = p.weight_hh, bias_ih = p.bias_ih, bias_hh = p.bias_hh;
}

GRUCell::Step GRUCell::forward_with_gates(const Tensor& x, const Tensor& h_in) const {
  Tensor h = detail::cell_state("GRUCell", x, h_in, options.input_size(), options.hidden_size());
  Tensor gi = linear(x, weight_ih, bias_ih);  // (B, 3H)
  return Recurrent(weight_hh, bias_hh, options.reset_after()).step(gi, h);
}

Tensor GRUCell::forward(const Tensor& x, const Tensor& h) const {
  return forward_with_gates(x, h).h_new;
}

// ---- GRU ----------------------------------------------------------------------------------------

GRU::GRU(const GRUOptions& opts, Generator& gen) : options(opts) {
  // Per layer k and direction d at index k·D + d, PyTorch's names (weight_ih_l{k}[_reverse], ...),
  // gate rows r | z | n, every parameter ~ U(±1/√H) (layers/init_params.hpp).
  auto p = detail::register_recurrent(*this, "GRU", opts.input_size(), opts.hidden_size(),
                                      opts.num_layers(), opts.bidirectional(), 3, gen);
  weight_ih = p.weight_ih, weight_hh = p.weight_hh, bias_ih = p.bias_ih, bias_hh = p.bias_hh;
}

// ---- the argument checks, shared with the fused path ----------------------------------------------

namespace detail {

void check_gru_input(const GRUOptions& options, const Tensor& x) {
  if (!x.defined() || x.dim() != 3 || x.size(2) != options.input_size())
    throw ShapeError(fmt::format("GRU: expected x of shape (B, T, {}) (batch first), got {}",
                                 options.input_size(),
                                 x.defined() ? shape_str(x.shape()) : "undefined"));
  if (x.size(1) == 0) throw ShapeError("GRU: the sequence is empty (T = 0)");
}

void check_gru_ids(const GRUOptions& options, const std::vector<std::int64_t>& ids, std::size_t B,
                   std::size_t T, std::size_t V) {
  if (V != options.input_size())
    throw ShapeError(fmt::format("GRU::forward_ids: vocabulary size {} differs from input_size {}",
                                 V, options.input_size()));
  if (ids.size() != checked_mul("GRU::forward_ids", B, T, Shape{B, T}))
    throw ShapeError(fmt::format("GRU::forward_ids: {} ids for B = {}, T = {}", ids.size(), B, T));
  if (T == 0) throw ShapeError("GRU: the sequence is empty (T = 0)");
}

void check_gru_h0(const GRUOptions& options, const Tensor& h0, std::size_t B) {
  const std::size_t D = options.bidirectional() ? 2 : 1, L = options.num_layers(),
                    H = options.hidden_size();
  if (h0.defined() && h0.shape() != Shape{L * D, B, H})
    throw ShapeError(fmt::format(
        "GRU: expected h0 of shape ({}, {}, {}) (num_layers{}, B, H), got {}", L * D, B, H,
        D == 2 ? " · 2 directions" : "", shape_str(h0.shape())));
}

}  // namespace detail

const std::vector<Tensor>& GRU::Steps::at(std::size_t j) const {
  if (fused_)
    throw ValueError(
        "GRU::Output::steps: this forward ran the fused kernel, which keeps no per-step states; "
        "call gru.set_path(GRU::Path::Composed) before forward to get every h_t as a tape tensor "
        "(register_hook, retain_grad)");
  if (j >= states_.size())
    throw IndexError(fmt::format("GRU::Output::steps: index {} is out of range: there are {} "
                                 "(num_layers · directions)", j, states_.size()));
  return states_[j];
}

bool GRU::uses_fused() const {
  const bool applies = options.reset_after() && !record_gates_;
  if (path_ == Path::Fused && !applies)
    throw ValueError(fmt::format(
        "GRU: Path::Fused does not apply here ({}): use Path::Auto or Path::Composed",
        !options.reset_after() ? "the fused kernel is reset-after only"
                               : "gate recording needs the composed path"));
  return path_ != Path::Composed && applies;
}

GRU::Output GRU::forward(const Tensor& x, const Tensor& h0) {
  detail::check_gru_input(options, x);
  detail::check_gru_h0(options, h0, x.size(0));
  if (x.size(0) > 0 && uses_fused()) {
    records_.clear();
    return gru_forward_fused(*this, x, h0);
  }
  // Layer 0's input projection for all T steps at once: one GEMM over B·T rows per direction.
  std::vector<Tensor> gi0;
  for (std::size_t d = 0; d < (options.bidirectional() ? 2u : 1u); ++d)
    gi0.push_back(matmul(x, weight_ih[d], false, true) + bias_ih[d]);  // (B, T, 3H)
  return run(gi0, h0);
}

GRU::Output GRU::forward_ids(const std::vector<std::int64_t>& ids, std::size_t B, std::size_t T,
                             std::size_t V, const Tensor& h0) {
  detail::check_gru_ids(options, ids, B, T, V);
  detail::check_gru_h0(options, h0, B);
  if (B > 0 && uses_fused()) {
    records_.clear();
    return gru_forward_ids_fused(*this, ids, B, T, V, h0);
  }
  // one_hot(ids) W_ihᵀ picks rows of W_ihᵀ: transpose the (3H, V) weight once, then gather rows.
  const auto G = static_cast<std::ptrdiff_t>(3 * options.hidden_size());
  std::vector<Tensor> gi0;
  for (std::size_t d = 0; d < (options.bidirectional() ? 2u : 1u); ++d) {
    Tensor rows = index_select(transpose(weight_ih[d]), 0, ids);  // (B·T, 3H)
    Tensor gi = reshape(rows, std::vector<std::ptrdiff_t>{std::ptrdiff_t(B), std::ptrdiff_t(T), G});
    gi0.push_back(gi + bias_ih[d]);  // (B, T, 3H)
  }
  return run(gi0, h0);
}

GRU::Output GRU::run(const std::vector<Tensor>& gi0, const Tensor& h0) {
  const std::size_t L = options.num_layers(), D = gi0.size(), B = gi0[0].size(0),
                    T = gi0[0].size(1), H = options.hidden_size();
  records_.assign(record_gates_ ? L * D : 0, {});

  Output out;
  std::vector<Tensor> last;  // h_T of each layer and direction
  for (std::size_t k = 0; k < L; ++k) {
    std::vector<Tensor> directions;  // each (B, T, H)
    for (std::size_t d = 0; d < D; ++d) {
      const std::size_t j = k * D + d;
      // This layer's input projection (B, T, 3H); layer k > 0 reads the layer below.
      Tensor gi = k == 0 ? gi0[d] : matmul(out.output, weight_ih[j], false, true) + bias_ih[j];
      Recurrent cell(weight_hh[j], bias_hh[j], options.reset_after());
      Tensor h = h0.defined() ? select(h0, 0, j) : zeros({B, H}, gi.dtype());  // (B, H)
      std::vector<Tensor> hs(T);
      if (record_gates_) records_[j].resize(T);
      for (std::size_t s = 0; s < T; ++s) {
        const std::size_t t = d == 0 ? s : T - 1 - s;  // the reverse direction reads x_T first
        // select's gradient is added in place into gi's gradient: no (B, T, 3H) temporary per step.
        GRUCell::Step step = cell.step(select(gi, 1, t), h);  // gi[:, t]: (B, 3H)
        if (record_gates_)
          records_[j][t] = {step.r.detach(), step.z.detach(), step.n.detach(), h.detach(),
                            step.h_new.detach()};
        h = step.h_new;
        hs[t] = h;
      }
      last.push_back(h);
      directions.push_back(stack(hs, 1));
      out.steps.push_back(std::move(hs));
    }
    out.output = D == 1 ? directions[0] : concat(directions, -1);  // (B, T, D·H): the next layer's input
  }
  out.h_n = stack(last, 0);  // (L·D, B, H)
  return out;
}

}  // namespace tapegrad
