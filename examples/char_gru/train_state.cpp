// The resume-state file of char_gru train (see train_state.hpp).
#include "train_state.hpp"

#include <cerrno>
#include <cmath>
#include <cstring>
#include <limits>
#include <map>
#include <set>
#include <sys/stat.h>

#include <fmt/format.h>

namespace char_model {

using namespace tapegrad;

std::string resume_state_path(const std::string& checkpoint) {
  const std::string ext = ".npz";
  if (checkpoint.size() > ext.size() && checkpoint.compare(checkpoint.size() - 4, 4, ext) == 0)
    return checkpoint.substr(0, checkpoint.size() - 4) + ".resume.npz";
  return checkpoint + ".resume.npz";
}

void save_train_state(const std::string& path, const TrainState& s) {
  auto i64 = [](std::int64_t v) { return npz::Array::from_i64({}, &v); };
  npz::Archive a;
  for (const auto& [name, t] : s.optim) a.emplace_back(name, to_npz_array(t));
  a.emplace_back("train.step", i64(s.step));
  a.emplace_back("train.position", i64(s.position));
  a.emplace_back("train.seq_len", i64(s.seq_len));
  a.emplace_back("train.batch", i64(s.batch));
  a.emplace_back("train.corpus_hash", i64(s.corpus_hash));
  a.emplace_back("train.weights_hash", i64(s.weights_hash));
  a.emplace_back("train.recent_losses", npz::Array::from_f64({s.recent_losses.size()}, s.recent_losses.data()));
  a.emplace_back("train.hidden", to_npz_array(s.hidden));
  npz::save_npz(path, a);
}

TrainState load_train_state(const std::string& path, const CharGRU& model) {
  struct stat st {};
  if (::stat(path.c_str(), &st) != 0)
    throw FileError(fmt::format("resume state '{}': cannot open: {} (char_gru train writes it beside "
                                "the checkpoint; --resume needs both files)", path, std::strerror(errno)));
  const std::uint64_t limit =
      std::min<std::uint64_t>(npz::kDefaultMaxTotalBytes, 64 * std::uint64_t(st.st_size) + (64ull << 20));
  const npz::Archive archive = npz::load_npz(path, limit);
  std::map<std::string, const npz::Array*> entries;
  for (const auto& [name, array] : archive) entries[name] = &array;
  auto fail = [&](const std::string& name, const std::string& why) {
    return FileError(fmt::format("resume state '{}': entry '{}': {}", path, name, why));
  };
  auto get = [&](const std::string& name) -> const npz::Array& {
    auto it = entries.find(name);
    if (it == entries.end()) throw FileError(fmt::format("resume state '{}': missing entry '{}'", path, name));
    return *it->second;
  };
  auto integer = [&](const std::string& name, std::int64_t lo, std::int64_t hi) {
    const npz::Array& a = get(name);
    if (a.dtype != npz::DType::Int64 && a.dtype != npz::DType::Int32)
      throw fail(name, fmt::format("dtype {}, expected int64", npz::dtype_name(a.dtype)));
    if (!a.shape.empty()) throw fail(name, "expected a single value (0-d array)");
    std::int64_t v = a.to_vector<std::int64_t>()[0];
    if (v < lo || v > hi) throw fail(name, fmt::format("{} is not in {}..{}", v, lo, hi));
    return v;
  };

  TrainState s;
  const std::int64_t kMax = std::numeric_limits<std::int64_t>::max();
  s.step = integer("train.step", 0, 100000000);
  s.position = integer("train.position", 0, kMax);
  s.seq_len = integer("train.seq_len", 1, 100000);
  s.batch = integer("train.batch", 1, 100000);
  s.corpus_hash = integer("train.corpus_hash", std::numeric_limits<std::int64_t>::min(), kMax);
  s.weights_hash = integer("train.weights_hash", std::numeric_limits<std::int64_t>::min(), kMax);
  if (s.weights_hash != weights_hash(model))
    throw fail("train.weights_hash", "does not match the checkpoint's weights: this resume state "
                                     "belongs to another checkpoint (or the checkpoint was changed)");

  const npz::Array& rl = get("train.recent_losses");
  if (rl.dtype != npz::DType::Float64 || rl.shape.size() != 1 || rl.shape[0] > 100)
    throw fail("train.recent_losses", fmt::format("expected at most 100 float64 values, got {} {}",
                                                  npz::dtype_name(rl.dtype), rl.shape.size() == 1
                                                      ? std::to_string(rl.shape[0]) + " values"
                                                      : std::to_string(rl.shape.size()) + "-D"));
  s.recent_losses = rl.to_vector<double>();
  for (double v : s.recent_losses)
    if (!std::isfinite(v) || v < 0) throw fail("train.recent_losses", fmt::format("{} is not a finite loss ≥ 0", v));

  const DType dtype = model.parameters()[0].dtype();
  const npz::Array& h = get("train.hidden");
  const npz::DType want = dtype == DType::Float64 ? npz::DType::Float64 : npz::DType::Float32;
  const std::vector<std::size_t> hshape = {model.config.layers, std::size_t(s.batch), model.config.hidden};
  if (h.dtype != want || h.shape != hshape)
    throw fail("train.hidden", fmt::format("expected {} of shape ({}, {}, {}) (layers, batch, hidden), got {} "
                                           "with {} dimensions", npz::dtype_name(want), hshape[0], hshape[1],
                                           hshape[2], npz::dtype_name(h.dtype), h.shape.size()));
  for (double v : h.to_vector<double>())
    if (!std::isfinite(v)) throw fail("train.hidden", "holds a non-finite value");
  s.hidden = from_npz_array(h, path + ": train.hidden");

  // The optimizer state: every parameter's complete state once any step was taken.
  const std::size_t P = model.parameters().size();
  std::map<std::size_t, std::set<std::string>> per_param;
  for (const auto& [name, array] : archive) {
    if (name.rfind("train.", 0) == 0) {
      static const std::set<std::string> known = {"train.step", "train.position", "train.seq_len",
                                                  "train.batch", "train.corpus_hash", "train.weights_hash",
                                                  "train.recent_losses", "train.hidden"};
      if (!known.count(name)) throw fail(name, "unknown entry");
      continue;
    }
    std::size_t i = 0, dot = 0;
    if (name.rfind("optim.state.", 0) != 0 || (dot = name.find('.', 12)) == std::string::npos ||
        dot == 12 || name.find_first_not_of("0123456789", 12) != dot || dot - 12 > 6)
      throw fail(name, "unknown entry (expected optim.state.<i>.<name> or train.*)");
    i = std::stoul(name.substr(12, dot - 12));
    if (i >= P) throw fail(name, fmt::format("parameter index {} but the model has {} parameters", i, P));
    for (double v : array.to_vector<double>())
      if (!std::isfinite(v)) throw fail(name, "holds a non-finite value");
    per_param[i].insert(name.substr(dot + 1));
    s.optim.emplace_back(name, from_npz_array(array, path + ": " + name));
  }
  if (s.step > 0) {
    if (per_param.size() != P)
      throw FileError(fmt::format("resume state '{}': optimizer state for {} of the model's {} parameters; "
                                  "resuming would silently reset the others", path, per_param.size(), P));
    for (const auto& [i, names] : per_param)
      if (names != per_param.begin()->second || !names.count("step"))
        throw FileError(fmt::format("resume state '{}': the optimizer state of parameter {} is incomplete "
                                    "(has {})", path, i, fmt::join(names, ", ")));
  }
  return s;
}

}  // namespace char_model
