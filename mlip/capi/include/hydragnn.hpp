/* hydragnn.hpp: a small header-only C++17 wrapper of the C ABI in hydragnn.h (libhydragnn.so).
 *
 *  - hydragnn::Api: the engine's entry points as function pointers. Api::linked() takes those of
 *    a program linked with -lhydragnn; a client that opens the library at run time fills one with
 *    Api::resolve(lookup), e.g. with dlsym (the LAMMPS plugin does).
 *  - hydragnn::check(api, status, what): the one status check; throws hydragnn::Error (status
 *    code + the engine's message). hydragnn::message(api, status) returns the message instead.
 *  - hydragnn::Model, hydragnn::Eval: RAII owners of hgnn_model_t and hgnn_eval_t (move-only).
 *  - hydragnn::Graph: an owned graph (local atoms first, then ghosts) whose view() is the
 *    hgnn_graph_t the engine reads.
 *
 *  Nothing here is compiled into libhydragnn.so: the wrapper only calls the C functions. */

#ifndef HYDRAGNN_HPP
#define HYDRAGNN_HPP

#include "hydragnn.h"

#include <cstdint>
#include <stdexcept>
#include <string>
#include <utility>
#include <vector>

namespace hydragnn {

// Every function of the C ABI, for Api (X(name) per function).
#define HYDRAGNN_API_FUNCTIONS(X)                                                              \
  X(hgnn_abi_version) X(hgnn_last_error) X(hgnn_version) X(hgnn_options_default)              \
  X(hgnn_set_num_threads) X(hgnn_precision_parse) X(hgnn_precision_name) X(hgnn_model_load)    \
  X(hgnn_model_free) X(hgnn_model_set_compress) X(hgnn_model_path)                             \
  X(hgnn_model_path_description) X(hgnn_model_cutoff) X(hgnn_model_num_layers)                 \
  X(hgnn_model_num_species) X(hgnn_model_species) X(hgnn_model_species_symbol)                 \
  X(hgnn_model_lammps_units) X(hgnn_model_precision) X(hgnn_model_num_branches)                \
  X(hgnn_model_branch_name) X(hgnn_model_active_branch) X(hgnn_model_feature_width)            \
  X(hgnn_model_info) X(hgnn_compute) X(hgnn_compute_batch) X(hgnn_compute_graph)              \
  X(hgnn_eval_begin) X(hgnn_eval_free) X(hgnn_eval_features) X(hgnn_eval_grads)               \
  X(hgnn_eval_forward_layer) X(hgnn_eval_readout) X(hgnn_eval_backward_layer)                 \
  X(hgnn_eval_results) X(hgnn_model_num_heads) X(hgnn_model_head) X(hgnn_model_head_index)      \
  X(hgnn_compute_head) X(hgnn_model_head_partials_size) X(hgnn_eval_head_partials)            \
  X(hgnn_model_finish_heads) X(hgnn_eval_node_head)                                           \
  X(hgnn_model_min_training_distance) X(hgnn_model_zbl) X(hgnn_closest_pair)                  \
  X(hgnn_model_energy_is_pooled) X(hgnn_eval_reduce) X(hgnn_model_num_graph_attr)             \
  X(hgnn_model_graph_attr_name) X(hgnn_model_set_graph_attr) X(hgnn_model_ensemble_size)      \
  X(hgnn_eval_begin_member) X(hgnn_model_member_feature_width)

// The engine's entry points.
struct Api {
#define HYDRAGNN_API_MEMBER(name) decltype(&::name) name = nullptr;
  HYDRAGNN_API_FUNCTIONS(HYDRAGNN_API_MEMBER)
#undef HYDRAGNN_API_MEMBER

  // The functions of a program linked with libhydragnn.so (only referenced when called).
  static Api linked()
  {
    Api a;
#define HYDRAGNN_API_LINK(name) a.name = &::name;
    HYDRAGNN_API_FUNCTIONS(HYDRAGNN_API_LINK)
#undef HYDRAGNN_API_LINK
    return a;
  }

  // Fills every entry with lookup(name) (a void * for a function name, e.g. dlsym on a handle);
  // returns the first name it could not find, or "" when all were found.
  template <class Lookup> std::string resolve(Lookup &&lookup)
  {
    std::string missing;
#define HYDRAGNN_API_RESOLVE(name)                                                           \
  name = reinterpret_cast<decltype(name)>(lookup(#name));                                    \
  if (!name && missing.empty()) missing = #name;
    HYDRAGNN_API_FUNCTIONS(HYDRAGNN_API_RESOLVE)
#undef HYDRAGNN_API_RESOLVE
    return missing;
  }

  // "" when the library's C ABI version is the one this header describes, else a message that
  // names both versions.
  std::string abi_mismatch(const std::string &library) const
  {
    const int found = hgnn_abi_version();
    if (found == HGNN_ABI_VERSION) return std::string();
    return "engine library '" + library + "' implements C ABI version " + std::to_string(found) +
        " but this client was built against hydragnn.h of ABI version " +
        std::to_string(HGNN_ABI_VERSION);
  }
};

// A failed engine call: its status code and the engine's message.
class Error : public std::runtime_error {
 public:
  Error(hgnn_status_t status, const std::string &what) : std::runtime_error(what), status_(status) {}
  hgnn_status_t status() const { return status_; }

 private:
  hgnn_status_t status_;
};

// "" on success, else "<what> failed: <the engine's message>".
inline std::string message(const Api &api, hgnn_status_t status, const char *what = "hydragnn")
{
  if (status == HGNN_SUCCESS) return std::string();
  const char *m = api.hgnn_last_error();
  return std::string(what) + " failed: " + (m ? m : "?");
}

// The one status check: throws Error with message(api, status, what) unless status is success.
inline void check(const Api &api, hgnn_status_t status, const char *what = "hydragnn")
{
  if (status != HGNN_SUCCESS) throw Error(status, message(api, status, what));
}

// A loaded model (owns its hgnn_model_t; empty when default-constructed or moved from).
class Model {
 public:
  Model() = default;
  Model(const Api &api, const std::string &path, const hgnn_options_t &options) : api_(&api)
  {
    check(api, api.hgnn_model_load(path.c_str(), &options, &p_), "hgnn_model_load");
  }
  ~Model() { reset(); }
  Model(Model &&o) noexcept : api_(o.api_), p_(std::exchange(o.p_, nullptr)) {}
  Model &operator=(Model &&o) noexcept
  {
    if (this != &o) {
      reset();
      api_ = o.api_;
      p_ = std::exchange(o.p_, nullptr);
    }
    return *this;
  }
  Model(const Model &) = delete;
  Model &operator=(const Model &) = delete;

  explicit operator bool() const { return p_ != nullptr; }
  hgnn_model_t *get() const { return p_; }
  const Api &api() const { return *api_; }
  void reset()
  {
    if (p_) api_->hgnn_model_free(p_);
    p_ = nullptr;
  }

  void set_compress(bool compress, double tolerance = 0.0)
  {
    check(*api_, api_->hgnn_model_set_compress(p_, compress ? 1 : 0, tolerance),
          "hgnn_model_set_compress");
  }
  std::string path_description() const { return str(api_->hgnn_model_path_description, "hgnn_model_path_description"); }
  // The per-structure attributes the model is conditioned on (e.g. charge, spin), in order.
  std::vector<std::string> graph_attr_names() const
  {
    const int n = i32(api_->hgnn_model_num_graph_attr, "hgnn_model_num_graph_attr");
    std::vector<std::string> names;
    for (int k = 0; k < n; k++) {
      const char *s = nullptr;
      check(*api_, api_->hgnn_model_graph_attr_name(p_, k, &s), "hgnn_model_graph_attr_name");
      names.emplace_back(s ? s : "");
    }
    return names;
  }
  // Their values for the evaluations that follow.
  void set_graph_attr(const std::vector<double> &values)
  {
    check(*api_, api_->hgnn_model_set_graph_attr(p_, values.data(), static_cast<int64_t>(values.size())),
          "hgnn_model_set_graph_attr");
  }
  std::string info() const { return str(api_->hgnn_model_info, "hgnn_model_info"); }
  std::string lammps_units() const { return str(api_->hgnn_model_lammps_units, "hgnn_model_lammps_units"); }
  double cutoff() const
  {
    double c = 0.0;
    check(*api_, api_->hgnn_model_cutoff(p_, &c), "hgnn_model_cutoff");
    return c;
  }
  int num_layers() const { return i32(api_->hgnn_model_num_layers, "hgnn_model_num_layers"); }
  // The number of members K: 1 for a model file, K for an ensemble file.
  int ensemble_size() const { return i32(api_->hgnn_model_ensemble_size, "hgnn_model_ensemble_size"); }
  // Values per atom entering layer `layer` of member `member` (members may differ in width).
  int member_feature_width(int member, int layer) const
  {
    int32_t w = 0;
    check(*api_, api_->hgnn_model_member_feature_width(p_, member, layer, &w), "hgnn_model_member_feature_width");
    return w;
  }
  // The shortest interatomic distance of the training data (Å); 0 when not recorded.
  double min_training_distance() const
  {
    double d = 0.0;
    check(*api_, api_->hgnn_model_min_training_distance(p_, &d), "hgnn_model_min_training_distance");
    return d;
  }
  int precision() const { return i32(api_->hgnn_model_precision, "hgnn_model_precision"); }
  int feature_width(int layer) const
  {
    int32_t w = 0;
    check(*api_, api_->hgnn_model_feature_width(p_, layer, &w), "hgnn_model_feature_width");
    return w;
  }
  // The model's atomic numbers.
  std::vector<int32_t> species() const
  {
    const int n = i32(api_->hgnn_model_num_species, "hgnn_model_num_species");
    std::vector<int32_t> z(n);
    if (n > 0) check(*api_, api_->hgnn_model_species(p_, z.data(), n), "hgnn_model_species");
    return z;
  }
  // The model's element symbols, in the order of species().
  std::vector<std::string> species_symbols() const
  {
    const int n = i32(api_->hgnn_model_num_species, "hgnn_model_num_species");
    std::vector<std::string> s;
    for (int k = 0; k < n; k++) {
      const char *sym = nullptr;
      check(*api_, api_->hgnn_model_species_symbol(p_, k, &sym), "hgnn_model_species_symbol");
      s.emplace_back(sym);
    }
    return s;
  }
  std::vector<std::string> branch_names() const
  {
    const int n = i32(api_->hgnn_model_num_branches, "hgnn_model_num_branches");
    std::vector<std::string> s;
    for (int k = 0; k < n; k++) {
      const char *name = nullptr;
      check(*api_, api_->hgnn_model_branch_name(p_, k, &name), "hgnn_model_branch_name");
      s.emplace_back(name);
    }
    return s;
  }

  // The index of the branch in use.
  int active_branch() const { return i32(api_->hgnn_model_active_branch, "hgnn_model_active_branch"); }

  // The heads of the branch in use, in order (the energy head included).
  std::vector<hgnn_head_t> heads() const
  {
    const int n = i32(api_->hgnn_model_num_heads, "hgnn_model_num_heads");
    std::vector<hgnn_head_t> h(n);
    for (int k = 0; k < n; k++) check(*api_, api_->hgnn_model_head(p_, k, &h[k]), "hgnn_model_head");
    return h;
  }

  // Whether the energy is graph-level (pooled node features through an MLP): no per-atom
  // energies, and Eval::reduce between readout() and the backward pass.
  bool energy_is_pooled() const { return i32(api_->hgnn_model_energy_is_pooled, "hgnn_model_energy_is_pooled") != 0; }

  // Sizes of the graph-head partials of the layer-by-layer protocol (sums, maxima).
  std::pair<int64_t, int64_t> head_partials_size() const
  {
    int64_t s = 0, m = 0;
    check(*api_, api_->hgnn_model_head_partials_size(p_, &s, &m), "hgnn_model_head_partials_size");
    return {s, m};
  }

  // The graph heads' values (the energy included, in head order) from partials reduced over
  // every rank; `n_values` is the sum of the graph heads' dim.
  std::vector<double> finish_heads(const std::vector<double> &sums, const std::vector<double> &maxs,
                                   int64_t n_values) const
  {
    std::vector<double> v(n_values);
    check(*api_,
          api_->hgnn_model_finish_heads(p_, sums.data(), static_cast<int64_t>(sums.size()), maxs.data(),
                                        static_cast<int64_t>(maxs.size()), v.data(), n_values),
          "hgnn_model_finish_heads");
    return v;
  }

 private:
  const Api *api_ = nullptr;
  hgnn_model_t *p_ = nullptr;

  template <class F> std::string str(F f, const char *what) const
  {
    const char *s = nullptr;
    check(*api_, f(p_, &s), what);
    return s ? std::string(s) : std::string();
  }
  template <class F> int i32(F f, const char *what) const
  {
    int32_t v = 0;
    check(*api_, f(p_, &v), what);
    return v;
  }
};

// An owned graph of local atoms (rows 0..n_local) then ghosts; view() is what the engine reads.
struct Graph {
  int64_t n_local = 0;
  std::vector<double> positions;    // n_total x 3
  std::vector<int32_t> numbers;     // n_total
  std::vector<int64_t> centers, neighbors;
  std::vector<double> shifts;    // n_edges x 3, or empty for none

  int64_t n_total() const { return static_cast<int64_t>(numbers.size()); }
  int64_t n_edges() const { return static_cast<int64_t>(centers.size()); }
  void clear()
  {
    n_local = 0;
    positions.clear();
    numbers.clear();
    centers.clear();
    neighbors.clear();
    shifts.clear();
  }
  // The C view; valid while this graph is neither changed nor destroyed.
  hgnn_graph_t view() const
  {
    hgnn_graph_t g;
    g.n_local = n_local;
    g.n_total = n_total();
    g.positions = positions.data();
    g.atomic_numbers = numbers.data();
    g.n_edges = n_edges();
    g.centers = centers.data();
    g.neighbors = neighbors.data();
    g.shifts = shifts.empty() ? nullptr : shifts.data();
    return g;
  }
};

// A layer-by-layer evaluation (owns its hgnn_eval_t; empty when default-constructed).
class Eval {
 public:
  Eval() = default;
  Eval(const Model &model, const Graph &graph) : api_(&model.api())
  {
    const hgnn_graph_t g = graph.view();
    check(*api_, api_->hgnn_eval_begin(model.get(), &g, &p_), "hgnn_eval_begin");
  }
  // Member `member` (0..ensemble_size()-1) of an ensemble file, layer by layer.
  Eval(const Model &model, int member, const Graph &graph) : api_(&model.api())
  {
    const hgnn_graph_t g = graph.view();
    check(*api_, api_->hgnn_eval_begin_member(model.get(), member, &g, &p_), "hgnn_eval_begin_member");
  }
  ~Eval() { reset(); }
  Eval(Eval &&o) noexcept : api_(o.api_), p_(std::exchange(o.p_, nullptr)) {}
  Eval &operator=(Eval &&o) noexcept
  {
    if (this != &o) {
      reset();
      api_ = o.api_;
      p_ = std::exchange(o.p_, nullptr);
    }
    return *this;
  }
  Eval(const Eval &) = delete;
  Eval &operator=(const Eval &) = delete;

  explicit operator bool() const { return p_ != nullptr; }
  hgnn_eval_t *get() const { return p_; }
  void reset()
  {
    if (p_) api_->hgnn_eval_free(p_);
    p_ = nullptr;
  }

  // Features entering `layer` (n_total x width, owned by the evaluation); sets `width`.
  double *features(int layer, int &width)
  {
    return buffer(api_->hgnn_eval_features, layer, width, "hgnn_eval_features");
  }
  // Gradient with respect to the features entering `layer`; sets `width`.
  double *grads(int layer, int &width) { return buffer(api_->hgnn_eval_grads, layer, width, "hgnn_eval_grads"); }
  void forward_layer(int layer) { check(*api_, api_->hgnn_eval_forward_layer(p_, layer), "hgnn_eval_forward_layer"); }
  double readout()
  {
    double e = 0.0;
    check(*api_, api_->hgnn_eval_readout(p_, &e), "hgnn_eval_readout");
    return e;
  }
  void backward_layer(int layer) { check(*api_, api_->hgnn_eval_backward_layer(p_, layer), "hgnn_eval_backward_layer"); }
  void results(hgnn_results_t &r) { check(*api_, api_->hgnn_eval_results(p_, &r), "hgnn_eval_results"); }
  // After readout(): this evaluation's graph-head partials (sizes from Model::head_partials_size).
  void head_partials(std::vector<double> &sums, std::vector<double> &maxs)
  {
    check(*api_,
          api_->hgnn_eval_head_partials(p_, sums.data(), static_cast<int64_t>(sums.size()), maxs.data(),
                                        static_cast<int64_t>(maxs.size())),
          "hgnn_eval_head_partials");
  }
  // Graph-level energy, after readout(): every rank's head_partials reduced (sums added, maxima
  // maxed); returns the whole structure's energy and seeds the backward pass.
  double reduce(const std::vector<double> &sums, const std::vector<double> &maxs)
  {
    double e = 0.0;
    check(*api_,
          api_->hgnn_eval_reduce(p_, sums.data(), static_cast<int64_t>(sums.size()), maxs.data(),
                                 static_cast<int64_t>(maxs.size()), &e),
          "hgnn_eval_reduce");
    return e;
  }
  // After readout(): node head `name` on the local atoms (n_local x dim values).
  void node_head(const char *name, std::vector<double> &values)
  {
    check(*api_, api_->hgnn_eval_node_head(p_, name, values.data(), static_cast<int64_t>(values.size())),
          "hgnn_eval_node_head");
  }

 private:
  const Api *api_ = nullptr;
  hgnn_eval_t *p_ = nullptr;

  template <class F> double *buffer(F f, int layer, int &width, const char *what)
  {
    double *d = nullptr;
    int32_t w = 0;
    check(*api_, f(p_, layer, &d, &w), what);
    width = w;
    return d;
  }
};

}    // namespace hydragnn

#endif
