// test_hpp.cpp: the C++ wrapper (include/hydragnn.hpp) linked against libhydragnn.so: RAII model
// and evaluation, typed accessors, the status check that throws. Usage: test_hpp MODEL.
#include "hydragnn.hpp"

#include <cmath>
#include <cstdio>
#include <string>
#include <vector>

static int failures = 0;
#define CHECK(cond, what)                                                  \
  do {                                                                     \
    if (!(cond)) {                                                         \
      failures++;                                                          \
      std::printf("FAIL %s:%d: %s\n", __FILE__, __LINE__, what);           \
    }                                                                      \
  } while (0)

int main(int argc, char **argv)
{
  if (argc < 2) return 2;
  const hydragnn::Api api = hydragnn::Api::linked();
  CHECK(api.abi_mismatch("linked").empty(), "ABI version");
  hgnn_options_t opts = api.hgnn_options_default();
  opts.num_threads = 1;
  hydragnn::Model model(api, argv[1], opts);
  CHECK(model.num_layers() == 3, "layers");
  CHECK(model.species_symbols().size() == 3 && model.species_symbols()[0] == "Cu", "symbols");
  CHECK(model.species()[1] == 28, "species");
  CHECK(model.lammps_units() == "metal", "units");
  CHECK(model.precision() == HGNN_DTYPE_FLOAT64, "precision");
  CHECK(!model.branch_names().empty(), "branches");

  // a dimer as a graph: atom 0 local, atom 1 a ghost
  hydragnn::Graph g;
  g.n_local = 1;
  g.positions = {0, 0, 0, 2.5, 0, 0};
  g.numbers = {29, 28};
  g.centers = {0};
  g.neighbors = {1};
  double e = 0;
  {
    hydragnn::Eval ev(model, g);
    for (int l = 0; l < model.num_layers(); l++) ev.forward_layer(l);
    e = ev.readout();
    // the heads: this model has the energy head alone; its pooled value is the local energy
    const auto heads = model.heads();
    CHECK(heads.size() == 1 && std::string(heads[0].name) == "energy" && heads[0].kind == HGNN_HEAD_GRAPH &&
              heads[0].dim == 1,
          "heads");
    CHECK(model.active_branch() == 0, "active branch");
    const auto sizes = model.head_partials_size();
    CHECK(sizes.first == 2 && sizes.second == 0, "partials size");
    std::vector<double> sums(sizes.first), maxs(sizes.second);
    ev.head_partials(sums, maxs);
    CHECK(sums[0] == e && sums[1] == 1.0, "partials");
    const auto vals = model.finish_heads(sums, maxs, 1);
    CHECK(vals.size() == 1 && std::fabs(vals[0] - e) < 1e-12 * (std::fabs(e) + 1.0), "finished energy");
    bool bad_size = false;
    try {
      model.finish_heads(sums, maxs, 2);
    } catch (hydragnn::Error &err) {
      bad_size = err.status() == HGNN_ERROR_INVALID_ARGUMENT;
    }
    CHECK(bad_size, "finish_heads with a wrong size throws");
    std::vector<double> none(1);
    bool no_node = false;
    try {
      ev.node_head("charges", none);
    } catch (hydragnn::Error &err) {
      no_node = std::string(err.what()).find("no node head named 'charges'") != std::string::npos;
    }
    CHECK(no_node, "unknown node head throws");
    for (int l = model.num_layers() - 1; l >= 0; l--) ev.backward_layer(l);
    double f[6];
    hgnn_results_t r{0, f, nullptr, nullptr, nullptr};
    ev.results(r);
    CHECK(r.energy == e && std::isfinite(e), "energy");
    CHECK(std::fabs(f[0] + f[3]) < 1e-9 * (std::fabs(f[0]) + 1.0), "forces balance");
    // an evaluation is in progress: the model's path cannot change
    bool threw = false;
    try {
      model.set_compress(false);
    } catch (hydragnn::Error &err) {
      threw = err.status() == HGNN_ERROR_INVALID_ARGUMENT &&
          std::string(err.what()).find("hgnn_model_set_compress failed") != std::string::npos;
    }
    CHECK(threw, "set_compress during an evaluation throws");
  }
  model.set_compress(false);    // the evaluation is gone
  CHECK(model.path_description().find("exact") != std::string::npos, "exact path");

  bool threw = false;
  try {
    hydragnn::Model bad(api, "/nonexistent.model", opts);
  } catch (hydragnn::Error &err) {
    threw = err.status() == HGNN_ERROR_IO;
  }
  CHECK(threw, "missing file throws");
  CHECK(hydragnn::message(api, HGNN_SUCCESS).empty(), "message on success");
  hydragnn::Model moved = std::move(model);
  CHECK(moved && !model, "move");
  std::printf("%s: %d failure(s)\n", argv[0], failures);
  return failures == 0 ? 0 : 1;
}
