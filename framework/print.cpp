// tapegrad — PyTorch-like printing.
#include "framework/print.hpp"

#include <algorithm>
#include <cmath>
#include <map>
#include <unordered_map>

#include "framework/tape.hpp"

namespace tapegrad {

namespace {

struct Printer {
  const Tensor& t;
  const PrintOptions& opt;
  bool summarize;
  bool scientific = false;
  std::size_t width = 1;
  std::vector<std::size_t> strides;

  std::string number(double v) const {
    std::string s = scientific ? fmt::format("{:.{}e}", v, opt.precision)
                               : fmt::format("{:.{}f}", v, opt.precision);
    return s;
  }

  /// Indices along an axis of size n that are shown (-1 marks the "..." gap).
  std::vector<std::ptrdiff_t> shown(std::size_t n) const {
    std::vector<std::ptrdiff_t> idx;
    if (summarize && n > 2 * opt.edgeitems) {
      for (std::size_t i = 0; i < opt.edgeitems; ++i) idx.push_back(std::ptrdiff_t(i));
      idx.push_back(-1);
      for (std::size_t i = n - opt.edgeitems; i < n; ++i) idx.push_back(std::ptrdiff_t(i));
    } else {
      for (std::size_t i = 0; i < n; ++i) idx.push_back(std::ptrdiff_t(i));
    }
    return idx;
  }

  void collect(std::size_t axis, std::size_t offset, std::vector<double>& out) const {
    if (axis == t.dim()) {
      out.push_back(t.at(offset));
      return;
    }
    for (auto i : shown(t.shape()[axis]))
      if (i >= 0) collect(axis + 1, offset + std::size_t(i) * strides[axis], out);
  }

  void render(std::size_t axis, std::size_t offset, std::size_t indent, std::string& out) const {
    if (axis == t.dim()) {
      std::string s = number(t.at(offset));
      out += std::string(width > s.size() ? width - s.size() : 0, ' ') + s;
      return;
    }
    out += '[';
    auto idx = shown(t.shape()[axis]);
    bool last_axis = axis + 1 == t.dim();
    for (std::size_t k = 0; k < idx.size(); ++k) {
      if (k) {
        out += ',';
        if (last_axis) {
          out += ' ';
        } else {
          out += std::string(t.dim() - axis - 1, '\n');
          out += std::string(indent + axis + 1, ' ');
        }
      }
      if (idx[k] < 0)
        out += "...";
      else
        render(axis + 1, offset + std::size_t(idx[k]) * strides[axis], indent, out);
    }
    out += ']';
  }
};

}  // namespace

std::string to_string(const Tensor& t, const PrintOptions& opt) {
  if (!t.defined()) return "tensor(undefined)";
  Printer p{t, opt, t.numel() > opt.threshold, false, 1, {}};
  p.strides.assign(t.dim(), 1);
  for (std::size_t i = t.dim(); i-- > 1;) p.strides[i - 1] = p.strides[i] * t.shape()[i];
  std::vector<double> vals;
  if (t.numel()) p.collect(0, 0, vals);
  double hi = 0, lo = INFINITY;
  for (double v : vals)
    if (std::isfinite(v) && v != 0) hi = std::max(hi, std::fabs(v)), lo = std::min(lo, std::fabs(v));
  p.scientific = hi >= 1e8 || (hi > 0 && lo < 1e-4) || (hi > 0 && hi / lo > 1e6);
  for (double v : vals) p.width = std::max(p.width, p.number(v).size());

  std::string out = "tensor(";
  if (t.numel() == 0)
    out += "[]";
  else
    p.render(0, 0, 7, out);
  out += fmt::format(", shape={}, dtype={}", shape_str(t.shape()), dtype_name(t.dtype()));
  if (!t.is_leaf())
    out += fmt::format(", op={}", t.op());
  else if (t.requires_grad())
    out += ", requires_grad=True";
  if (!t.name().empty()) out += fmt::format(", name='{}'", t.name());
  return out + ")";
}

std::ostream& operator<<(std::ostream& os, const Tensor& t) { return os << to_string(t); }

// ---- the tape: listing and Graphviz DOT ------------------------------------------------------------

namespace {
/// The live nodes' outputs in execution order, and each node's index among them (%k).
struct Numbered {
  std::vector<Tensor> outputs = tape().outputs();
  std::unordered_map<const Node*, std::size_t> index;
  Numbered() {
    for (std::size_t k = 0; k < outputs.size(); ++k) index[outputs[k].impl()->grad_fn.get()] = k;
  }
  /// %k for an input made by a listed node, else -1 (a leaf, or made before the last backward).
  std::ptrdiff_t of(const Tensor& t) const {
    auto it = index.find(t.impl()->grad_fn.get());
    return t.is_leaf() || it == index.end() ? -1 : std::ptrdiff_t(it->second);
  }
};
}  // namespace

std::string Tape::listing() const {
  Numbered nodes;
  std::string out;
  for (std::size_t i = 0; i < nodes.outputs.size(); ++i) {
    const Tensor& o = nodes.outputs[i];
    const Node& n = *o.impl()->grad_fn;
    std::string ins;
    for (std::size_t k = 0; k < n.inputs.size(); ++k) {
      const Tensor& in = n.inputs[k];
      if (k) ins += ", ";
      if (std::ptrdiff_t j = nodes.of(in); j >= 0)
        ins += fmt::format("%{}", j);
      else
        ins += in.name().empty() ? std::string("leaf") + shape_str(in.shape()) : in.name();
    }
    out += fmt::format("%{:<4} {:<14} ({}) -> {}{}\n", i, n.op, ins, shape_str(o.shape()),
                       o.name().empty() ? "" : "  " + o.name());
  }
  return out;
}

std::string Tape::to_dot() const {
  Numbered nodes;
  std::string out = "digraph tape {\n  rankdir=LR;\n  node [fontname=\"Helvetica\"];\n";
  // Leaves are numbered in the order they first appear (not by address: the same graph then
  // gives the same file on every run).
  std::map<const TensorImpl*, std::size_t> leaves;
  for (std::size_t i = 0; i < nodes.outputs.size(); ++i) {
    const Tensor& o = nodes.outputs[i];
    const Node& n = *o.impl()->grad_fn;
    std::string nm = o.name().empty() ? "" : "\\n" + o.name();
    out += fmt::format("  n{} [shape=box, label=\"{}{}\\n{}\"];\n", i, n.op, nm,
                       shape_str(o.shape()));
    for (const Tensor& in : n.inputs) {
      const TensorImpl* p = in.impl();
      if (std::ptrdiff_t j = nodes.of(in); j >= 0) {
        out += fmt::format("  n{} -> n{};\n", j, i);
      } else {
        auto [it, added] = leaves.emplace(p, leaves.size());
        if (added)
          out += fmt::format("  l{} [shape=ellipse, label=\"{}\\n{}\"];\n", it->second,
                             p->name.empty() ? "leaf" : p->name, shape_str(in.shape()));
        out += fmt::format("  l{} -> n{};\n", it->second, i);
      }
    }
  }
  return out + "}\n";
}

}  // namespace tapegrad
