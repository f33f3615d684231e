/** pair_style hydragnn: the LAMMPS side of the hydragnn-rs engine. It builds the graph of local
 *  atoms and their ghost neighbours from LAMMPS's full neighbour list, drives the engine's
 *  layer-by-layer evaluation (hgnn_eval_*), and moves node features and their gradients between
 *  ranks with LAMMPS's own forward/reverse communication, so the ghost shell is one model cutoff
 *  (+ skin) wide. All model logic lives in libhydragnn.so; this file only moves data.
 *
 *  Syntax:
 *    pair_style hydragnn [device cpu|cuda] [precision float32|float64] [branch NAME] [threads N]
 *                        [compress yes|no]
 *    pair_coeff * * model.file Elem1 ... ElemN      (one element per atom type; NULL skips a type)
 */

#include "pair_hydragnn.h"

#include "atom.h"
#include "comm.h"
#include "error.h"
#include "force.h"
#include "memory.h"
#include "neigh_list.h"
#include "neighbor.h"
#include "update.h"
#include "utils.h"

#include "hydragnn.h"

#include <dlfcn.h>

#include <algorithm>
#include <cstdlib>
#include <cstring>
#include <memory>
#include <string>
#include <vector>

using namespace LAMMPS_NS;

#ifndef HYDRAGNN_LIB_DEFAULT
#define HYDRAGNN_LIB_DEFAULT "libhydragnn.so"
#endif

namespace {

// Adds a row-major 3x3 virial to LAMMPS's 6-component one (xx yy zz xy xz yz). The engine's
// W[a][b] = sum over edges of (r_center - r_neighbor)_a * F_center_b is LAMMPS's convention
// (pair virial xy = delx * fy).
inline void add_voigt6(double *dst, const double *w9)
{
  dst[0] += w9[0];
  dst[1] += w9[4];
  dst[2] += w9[8];
  dst[3] += w9[1];
  dst[4] += w9[2];
  dst[5] += w9[5];
}

/* The engine library is opened at run time with RTLD_DEEPBIND rather than linked: liblammps
   exports a reference (unoptimised) BLAS, dgemm_ among it, and an ordinary load would bind
   libtorch's own dgemm_ calls to it (measured: 1.5x slower float64 evaluation). DEEPBIND makes
   the engine and libtorch resolve their symbols among themselves first. Path: $HYDRAGNN_LIB, else
   the library this plugin was built against (HYDRAGNN_LIB_DEFAULT, set by build.sh). */
// Every engine function the plugin calls, resolved with dlsym into Engine.
#define HGNN_FUNCTIONS(X)                                                                  \
  X(hgnn_abi_version) X(hgnn_last_error) X(hgnn_version) X(hgnn_options_default) X(hgnn_model_load)            \
  X(hgnn_model_free) X(hgnn_model_cutoff) X(hgnn_model_num_layers)                          \
  X(hgnn_model_feature_width) X(hgnn_model_info) X(hgnn_eval_begin) X(hgnn_eval_free)       \
  X(hgnn_eval_features) X(hgnn_eval_grads) X(hgnn_eval_forward_layer) X(hgnn_eval_readout)  \
  X(hgnn_eval_backward_layer) X(hgnn_eval_results) X(hgnn_model_set_compress)                \
  X(hgnn_model_path_description) X(hgnn_model_num_species) X(hgnn_model_species)              \
  X(hgnn_model_species_symbol) X(hgnn_model_lammps_units) X(hgnn_precision_parse)              \
  X(hgnn_precision_name)

struct Engine {
  void *handle = nullptr;
  std::string path;
#define HGNN_DECLARE(name) decltype(&::name) name = nullptr;
  HGNN_FUNCTIONS(HGNN_DECLARE)
#undef HGNN_DECLARE
};

// The message for an engine library whose C ABI is not the one this plugin was compiled against.
std::string abi_mismatch(const std::string &path, int library, int plugin)
{
  return "engine library '" + path + "' implements C ABI version " + std::to_string(library) +
      " but this plugin was built against hydragnn.h of ABI version " + std::to_string(plugin) +
      ": rebuild the plugin (lammps-plugin/build.sh) against this library's header, or point "
      "HYDRAGNN_LIB at a matching libhydragnn.so";
}

// The process-wide engine (never unloaded: libtorch does not support it); nullptr and a message
// in `err` when it cannot be loaded.
const Engine *engine(std::string &err)
{
  static Engine e;
  static std::string error;
  static bool tried = false;
  if (!tried) {
    tried = true;
    const char *env = std::getenv("HYDRAGNN_LIB");
    e.path = (env && *env) ? env : HYDRAGNN_LIB_DEFAULT;
    e.handle = dlopen(e.path.c_str(), RTLD_NOW | RTLD_LOCAL | RTLD_DEEPBIND);
    if (!e.handle) {
      const char *msg = dlerror();
      error = "cannot load the engine library '" + e.path + "': " + (msg ? msg : "?") +
          " (set HYDRAGNN_LIB to the path of libhydragnn.so)";
    } else {
      std::string missing;
#define HGNN_RESOLVE(name)                                                        \
  e.name = reinterpret_cast<decltype(e.name)>(dlsym(e.handle, #name));           \
  if (!e.name && missing.empty()) missing = #name;
      HGNN_FUNCTIONS(HGNN_RESOLVE)
#undef HGNN_RESOLVE
      if (!missing.empty()) {
        error = "engine library '" + e.path + "' lacks " + missing + " (older than the plugin?)";
        e.handle = nullptr;
      } else if (e.hgnn_abi_version() != HGNN_ABI_VERSION) {
        error = abi_mismatch(e.path, e.hgnn_abi_version(), HGNN_ABI_VERSION);
        e.handle = nullptr;
      }
    }
  }
  err = error;
  return e.handle ? &e : nullptr;
}

// Frees a layer-by-layer evaluation however compute() is left.
struct EvalFree {
  const Engine *api;
  void operator()(hgnn_eval_t *e) const { api->hgnn_eval_free(e); }
};
using EvalPtr = std::unique_ptr<hgnn_eval_t, EvalFree>;
}    // namespace

struct PairHydraGNN::Impl {
  const Engine *api = nullptr;

  // options from pair_style
  int device = HGNN_DEVICE_CPU;
  int dtype = HGNN_DTYPE_FLOAT64;
  int threads = 0;    // 0: HYDRAGNN_NUM_THREADS if set, else 1 per rank
  std::string branch;
  int compress = 1;    // fast path (tabulated radial filters, fused kernels) where available

  // the model, from pair_coeff
  std::string path;    // as given to pair_coeff
  hgnn_model_t *model = nullptr;
  double cutoff = 0.0;
  int nlayers = 0;
  std::vector<int> widths;         // values per atom in the features entering layer l (0..L)
  std::vector<int> type2z;         // LAMMPS type -> atomic number, -1 for NULL
  std::vector<std::string> type2elem;

  // per-step graph: graph rows are the mapped local atoms, then the ghost neighbours
  std::vector<int> row_of;    // LAMMPS index -> graph row, -1 when the atom is not in the graph
  std::vector<int> atom_of;   // graph row -> LAMMPS index
  std::vector<double> pos;
  std::vector<int32_t> numbers;
  std::vector<int64_t> centers, neighbors;
  std::vector<double> forces, energies, virials;

  // the exchange buffer, indexed like LAMMPS's atoms (local + ghost), `width` values per atom
  std::vector<double> stage;
  int width = 0;

  ~Impl()
  {
    if (api) api->hgnn_model_free(model);
  }
};

/* ---------------------------------------------------------------------- */

PairHydraGNN::PairHydraGNN(LAMMPS *lmp) : Pair(lmp), impl(new Impl)
{
  single_enable = 0;
  restartinfo = 0;
  one_coeff = 1;
  manybody_flag = 1;
  no_virial_fdotr_compute = 1;    // the engine returns the virial itself
  centroidstressflag = CENTROID_AVAIL;
}

PairHydraGNN::~PairHydraGNN()
{
  delete impl;
  if (allocated) {
    memory->destroy(setflag);
    memory->destroy(cutsq);
  }
}

void PairHydraGNN::allocate()
{
  allocated = 1;
  const int n = atom->ntypes;
  memory->create(setflag, n + 1, n + 1, "pair:setflag");
  memory->create(cutsq, n + 1, n + 1, "pair:cutsq");
  for (int i = 0; i <= n; i++)
    for (int j = 0; j <= n; j++) setflag[i][j] = 0;
}

// Status check for engine calls inside compute(): a failure may happen on one rank only, so it
// goes through error->one (error->all would wait at a barrier for ranks that never arrive).
void PairHydraGNN::check(int status, const char *what)
{
  if (status != HGNN_SUCCESS)
    error->one(FLERR, "pair_style hydragnn: {} failed on rank {} at step {} ({} local atoms): {}",
               what, comm->me, update->ntimestep, atom->nlocal, impl->api->hgnn_last_error());
}

/* ----------------------------------------------------------------------
   pair_style hydragnn [device cpu|cuda] [precision float32|float64] [branch NAME] [threads N]
                       [compress yes|no]
------------------------------------------------------------------------- */

void PairHydraGNN::settings(int narg, char **arg)
{
  if (strcmp(update->unit_style, "metal") != 0)
    error->all(FLERR,
               "pair_style hydragnn requires 'units metal' (hydragnn models use eV and Angstrom), "
               "but the input uses 'units {}'",
               update->unit_style);

  Impl &m = *impl;
  std::string err;
  m.api = engine(err);
  if (!m.api) error->all(FLERR, "pair_style hydragnn: {}", err);
  m.device = HGNN_DEVICE_CPU;
  m.dtype = HGNN_DTYPE_FLOAT64;
  m.threads = 0;
  m.branch.clear();
  m.compress = 1;
  for (int iarg = 0; iarg < narg; iarg += 2) {
    const std::string key = arg[iarg];
    if (iarg + 1 >= narg)
      error->all(FLERR, "pair_style hydragnn: keyword '{}' needs a value", key);
    const std::string val = arg[iarg + 1];
    if (key == "device") {
      if (val == "cpu")
        m.device = HGNN_DEVICE_CPU;
      else if (val == "cuda" || val == "gpu")
        m.device = HGNN_DEVICE_CUDA;
      else
        error->all(FLERR, "pair_style hydragnn: device must be cpu or cuda, got '{}'", val);
    } else if (key == "precision") {
      // the engine's one parser of precision names (float32/fp32/single, float64/fp64/double)
      int32_t dtype = 0;
      if (m.api->hgnn_precision_parse(val.c_str(), &dtype) != HGNN_SUCCESS)
        error->all(FLERR, "pair_style hydragnn: {}", m.api->hgnn_last_error());
      m.dtype = dtype;
    } else if (key == "branch" || key == "head") {
      m.branch = val;
    } else if (key == "threads") {
      m.threads = utils::inumeric(FLERR, val, false, lmp);
      if (m.threads < 1)
        error->all(FLERR, "pair_style hydragnn: threads must be >= 1, got {}", m.threads);
    } else if (key == "compress") {
      if (val == "yes" || val == "on" || val == "true" || val == "1")
        m.compress = 1;
      else if (val == "no" || val == "off" || val == "false" || val == "0")
        m.compress = 0;
      else
        error->all(FLERR, "pair_style hydragnn: compress must be yes or no, got '{}'", val);
    } else {
      error->all(FLERR,
                 "pair_style hydragnn: unknown keyword '{}' (known: device, precision, branch, "
                 "threads, compress)",
                 key);
    }
  }

  // pair_style re-issued after pair_coeff: reload the model with the new options
  if (m.model) load_model();
}

/* ----------------------------------------------------------------------
   Loads impl->path with the current options (on every rank; all ranks see the same file, so a
   failure is collective and error->all is safe here).
------------------------------------------------------------------------- */

void PairHydraGNN::load_model()
{
  Impl &m = *impl;
  const std::string file = utils::get_potential_file_path(m.path);
  if (file.empty())
    error->all(FLERR,
               "pair_style hydragnn: cannot open model file '{}': no such file (also searched "
               "the LAMMPS_POTENTIALS directories)",
               m.path);

  hgnn_options_t opts = impl->api->hgnn_options_default();
  opts.device = m.device;
  opts.dtype = m.dtype;
  int threads = m.threads;
  if (threads == 0 && !std::getenv("HYDRAGNN_NUM_THREADS")) threads = 1;
  opts.num_threads = threads;    // 0 lets the engine read HYDRAGNN_NUM_THREADS
  opts.branch = m.branch.empty() ? nullptr : m.branch.c_str();

  hgnn_model_t *model = nullptr;
  if (impl->api->hgnn_model_load(file.c_str(), &opts, &model) != HGNN_SUCCESS)
    error->all(FLERR, "pair_style hydragnn: cannot load model file '{}': {}", file,
               impl->api->hgnn_last_error());
  impl->api->hgnn_model_free(m.model);
  m.model = model;
  if (impl->api->hgnn_model_set_compress(model, m.compress, 0.0) != HGNN_SUCCESS)
    error->all(FLERR, "pair_style hydragnn: model file '{}': {}", file, impl->api->hgnn_last_error());

  int32_t nl = 0;
  if (impl->api->hgnn_model_cutoff(model, &m.cutoff) != HGNN_SUCCESS ||
      impl->api->hgnn_model_num_layers(model, &nl) != HGNN_SUCCESS)
    error->all(FLERR, "pair_style hydragnn: model file '{}': {}", file, impl->api->hgnn_last_error());
  m.nlayers = nl;
  m.widths.assign(nl + 1, 0);
  int maxw = 0;
  for (int l = 0; l <= nl; l++) {
    int32_t w = 0;
    if (impl->api->hgnn_model_feature_width(model, l, &w) != HGNN_SUCCESS)
      error->all(FLERR, "pair_style hydragnn: model file '{}': {}", file, impl->api->hgnn_last_error());
    m.widths[l] = w;
    // layer 0's features come from the species alone and are never exchanged
    if (l > 0 && l < nl) maxw = std::max(maxw, static_cast<int>(w));
  }
  comm_forward = maxw;
  comm_reverse = maxw;

  if (comm->me == 0) {
    const char *info = nullptr;
    if (impl->api->hgnn_model_info(model, &info) != HGNN_SUCCESS) info = "{}";
    utils::logmesg(lmp,
                   "pair_style hydragnn: engine {}, model '{}': cutoff {} A, {} layers, "
                   "{} on {}, {} torch thread(s) per rank, per-layer ghost exchange of up to {} "
                   "values per atom\n  model info: {}\n",
                   impl->api->hgnn_version(), file, m.cutoff, nl,
                   impl->api->hgnn_precision_name(m.dtype),
                   m.device == HGNN_DEVICE_CUDA ? "cuda" : "cpu",
                   threads > 0 ? std::to_string(threads) : std::string("HYDRAGNN_NUM_THREADS"),
                   maxw, info);
    const char *desc = nullptr;
    if (impl->api->hgnn_model_path_description(model, &desc) == HGNN_SUCCESS && desc)
      utils::logmesg(lmp, "pair_style hydragnn: {}\n", desc);
  }
}

/* ----------------------------------------------------------------------
   pair_coeff * * model.file Elem1 ... ElemN
------------------------------------------------------------------------- */

void PairHydraGNN::coeff(int narg, char **arg)
{
  if (!allocated) allocate();
  Impl &m = *impl;
  const int ntypes = atom->ntypes;
  if (narg != 3 + ntypes)
    error->all(FLERR,
               "pair_coeff for hydragnn: expected '* * model.file' followed by {} element "
               "name(s), one per atom type (NULL to leave a type to another hybrid sub-style), "
               "got {} argument(s)",
               ntypes, narg);
  if (strcmp(arg[0], "*") != 0 || strcmp(arg[1], "*") != 0)
    error->all(FLERR, "pair_coeff for hydragnn must start with '* *'");

  m.path = arg[2];
  load_model();

  // the model describes itself: its elements (with atomic numbers) and its units
  std::vector<std::string> symbols;
  std::vector<int> numbers;
  int32_t ns = 0;
  const char *units = nullptr;
  if (impl->api->hgnn_model_num_species(m.model, &ns) != HGNN_SUCCESS ||
      impl->api->hgnn_model_lammps_units(m.model, &units) != HGNN_SUCCESS)
    error->all(FLERR, "pair_style hydragnn: model file '{}': {}", m.path, impl->api->hgnn_last_error());
  numbers.assign(ns, 0);
  if (ns > 0 && impl->api->hgnn_model_species(m.model, numbers.data(), ns) != HGNN_SUCCESS)
    error->all(FLERR, "pair_style hydragnn: model file '{}': {}", m.path, impl->api->hgnn_last_error());
  for (int32_t k = 0; k < ns; k++) {
    const char *sym = nullptr;
    if (impl->api->hgnn_model_species_symbol(m.model, k, &sym) != HGNN_SUCCESS)
      error->all(FLERR, "pair_style hydragnn: model file '{}': {}", m.path, impl->api->hgnn_last_error());
    symbols.emplace_back(sym);
  }
  if (units != std::string(update->unit_style))
    error->all(FLERR, "pair_style hydragnn: model file '{}' is in LAMMPS units '{}' but the input "
               "uses 'units {}'", m.path, units, update->unit_style);

  std::string known;
  for (const auto &s : symbols) known += (known.empty() ? "" : " ") + s;
  m.type2z.assign(ntypes + 1, -1);
  m.type2elem.assign(ntypes + 1, "NULL");
  for (int t = 1; t <= ntypes; t++) {
    const std::string e = arg[2 + t];
    if (e == "NULL") continue;
    size_t k = 0;
    while (k < symbols.size() && symbols[k] != e) k++;
    if (k == symbols.size())
      error->all(FLERR,
                 "pair_coeff for hydragnn: element '{}' (atom type {}) is not in model file '{}' "
                 "(its elements: {})",
                 e, t, m.path, known);
    m.type2z[t] = numbers[k];
    m.type2elem[t] = e;
  }

  int count = 0;
  for (int i = 1; i <= ntypes; i++)
    for (int j = i; j <= ntypes; j++) {
      setflag[i][j] = setflag[j][i] = (m.type2z[i] >= 0 && m.type2z[j] >= 0) ? 1 : 0;
      count += setflag[i][j];
    }
  if (count == 0) error->all(FLERR, "pair_coeff for hydragnn maps no atom type to an element");

  if (comm->me == 0) {
    std::string map;
    for (int t = 1; t <= ntypes; t++) map += fmt::format(" {}->{}", t, m.type2elem[t]);
    utils::logmesg(lmp, "pair_style hydragnn: atom types to elements:{}\n", map);
  }
}

/* ---------------------------------------------------------------------- */

void PairHydraGNN::init_style()
{
  if (!impl->model) error->all(FLERR, "pair_style hydragnn: pair_coeff * * model.file ... is missing");
  if (atom->tag_enable == 0) error->all(FLERR, "pair_style hydragnn requires atom IDs");
  if (force->newton_pair == 0)
    error->all(FLERR,
               "pair_style hydragnn requires newton_pair on: forces on ghost atoms and the "
               "gradients of ghost-atom features are summed into their owners by reverse "
               "communication (remove 'newton off' or use 'newton on')");
  // a full list of local atoms with local and ghost neighbours; the ghost shell is one model
  // cutoff (+ skin) wide because features are exchanged after every layer
  neighbor->add_request(this, NeighConst::REQ_FULL);

  // Under pair_style hybrid/overlay/scaled the parent sizes LAMMPS's comm buffers from its
  // sub-styles' comm_forward/comm_reverse as they were at pair_style time, before pair_coeff
  // loaded the model and set ours: raise the parent's (Comm::init reads them after this).
  if (force->pair && force->pair != this) {
    force->pair->comm_forward = std::max(force->pair->comm_forward, comm_forward);
    force->pair->comm_reverse = std::max(force->pair->comm_reverse, comm_reverse);
  }
}

double PairHydraGNN::init_one(int i, int j)
{
  if (setflag[i][j] == 0)
    error->all(FLERR, "All pair coeffs are not set (atom types {} and {} have no element for "
               "pair_style hydragnn)", i, j);
  return impl->cutoff;
}

/* ---------------------------------------------------------------------- */

void PairHydraGNN::compute(int eflag, int vflag)
{
  ev_init(eflag, vflag);
  Impl &m = *impl;

  double **x = atom->x;
  double **f = atom->f;
  const int *type = atom->type;
  const int nlocal = atom->nlocal;
  const int nall = nlocal + atom->nghost;
  const double cutsq_model = m.cutoff * m.cutoff;

  // graph rows: mapped local atoms first, then the ghosts that are neighbours of one of them
  m.row_of.assign(nall, -1);
  m.atom_of.clear();
  m.pos.clear();
  m.numbers.clear();
  m.centers.clear();
  m.neighbors.clear();
  auto add_row = [&](int i) {
    m.row_of[i] = static_cast<int>(m.atom_of.size());
    m.atom_of.push_back(i);
    m.pos.insert(m.pos.end(), x[i], x[i] + 3);
    m.numbers.push_back(m.type2z[type[i]]);
  };
  for (int i = 0; i < nlocal; i++)
    if (m.type2z[type[i]] >= 0) add_row(i);
  const int n_local = static_cast<int>(m.atom_of.size());

  const int inum = list->inum;
  const int *ilist = list->ilist;
  const int *numneigh = list->numneigh;
  int **firstneigh = list->firstneigh;
  for (int ii = 0; ii < inum; ii++) {
    const int i = ilist[ii];
    const int gi = m.row_of[i];
    if (gi < 0) continue;
    const int *jlist = firstneigh[i];
    for (int jj = 0; jj < numneigh[i]; jj++) {
      const int j = jlist[jj] & NEIGHMASK;
      if (m.type2z[type[j]] < 0) continue;
      const double dx = x[j][0] - x[i][0];
      const double dy = x[j][1] - x[i][1];
      const double dz = x[j][2] - x[i][2];
      if (dx * dx + dy * dy + dz * dz >= cutsq_model) continue;
      if (m.row_of[j] < 0) add_row(j);
      m.centers.push_back(gi);
      m.neighbors.push_back(m.row_of[j]);
    }
  }
  const int n_total = static_cast<int>(m.atom_of.size());

  // A rank without local atoms has nothing to evaluate, but it still takes part in every
  // exchange below (it may relay ghost rows between its neighbours).
  EvalPtr eval(nullptr, EvalFree{m.api});
  if (n_local > 0) {
    hgnn_graph_t g;
    g.n_local = n_local;
    g.n_total = n_total;
    g.positions = m.pos.data();
    g.atomic_numbers = m.numbers.data();
    g.n_edges = static_cast<int64_t>(m.centers.size());
    g.centers = m.centers.data();
    g.neighbors = m.neighbors.data();
    g.shifts = nullptr;    // ghost positions are already the periodic images
    hgnn_eval_t *e = nullptr;
    check(impl->api->hgnn_eval_begin(m.model, &g, &e), "hgnn_eval_begin");
    eval.reset(e);
  }

  const int L = m.nlayers;
  for (int l = 0; l < L; l++) {
    // features entering layer 0 depend on the species only: no exchange
    if (l > 0) {
      const int w = m.widths[l];
      m.width = w;
      m.stage.assign(static_cast<size_t>(nall) * w, 0.0);
      double *d = nullptr;
      int32_t wd = 0;
      if (eval) {
        check(impl->api->hgnn_eval_features(eval.get(), l, &d, &wd), "hgnn_eval_features");
        if (wd != w) error->one(FLERR, "pair_style hydragnn: feature width mismatch at layer {}", l);
        for (int g = 0; g < n_local; g++)
          std::memcpy(&m.stage[static_cast<size_t>(m.atom_of[g]) * w], d + static_cast<size_t>(g) * w,
                      w * sizeof(double));
      }
      comm->forward_comm(this, w);
      if (eval)
        for (int g = n_local; g < n_total; g++)
          std::memcpy(d + static_cast<size_t>(g) * w, &m.stage[static_cast<size_t>(m.atom_of[g]) * w],
                      w * sizeof(double));
    }
    if (eval) check(impl->api->hgnn_eval_forward_layer(eval.get(), l), "hgnn_eval_forward_layer");
  }

  double energy = 0.0;
  if (eval) check(impl->api->hgnn_eval_readout(eval.get(), &energy), "hgnn_eval_readout");

  for (int l = L - 1; l >= 0; l--) {
    if (eval) check(impl->api->hgnn_eval_backward_layer(eval.get(), l), "hgnn_eval_backward_layer");
    if (l > 0) {
      const int w = m.widths[l];
      m.width = w;
      m.stage.assign(static_cast<size_t>(nall) * w, 0.0);
      double *d = nullptr;
      int32_t wd = 0;
      if (eval) {
        check(impl->api->hgnn_eval_grads(eval.get(), l, &d, &wd), "hgnn_eval_grads");
        if (wd != w) error->one(FLERR, "pair_style hydragnn: gradient width mismatch at layer {}", l);
        for (int g = 0; g < n_total; g++)
          std::memcpy(&m.stage[static_cast<size_t>(m.atom_of[g]) * w], d + static_cast<size_t>(g) * w,
                      w * sizeof(double));
      }
      comm->reverse_comm(this, w);    // ghost rows are added into their owners' rows
      if (eval)
        for (int g = 0; g < n_local; g++)
          std::memcpy(d + static_cast<size_t>(g) * w, &m.stage[static_cast<size_t>(m.atom_of[g]) * w],
                      w * sizeof(double));
    }
  }

  if (!eval) return;

  hgnn_results_t r;
  m.forces.assign(static_cast<size_t>(n_total) * 3, 0.0);
  r.energy = 0.0;
  r.forces = m.forces.data();
  double w9[9] = {0.0};
  r.virial = vflag_global ? w9 : nullptr;
  if (eflag_atom) m.energies.assign(n_local, 0.0);
  r.energies = eflag_atom ? m.energies.data() : nullptr;
  const bool peratom_virial = vflag_atom || cvflag_atom;
  if (peratom_virial) m.virials.assign(static_cast<size_t>(n_total) * 9, 0.0);
  r.virials = peratom_virial ? m.virials.data() : nullptr;
  check(impl->api->hgnn_eval_results(eval.get(), &r), "hgnn_eval_results");

  // forces on ghost atoms are summed into their owners by LAMMPS (newton_pair on)
  for (int g = 0; g < n_total; g++) {
    double *fi = f[m.atom_of[g]];
    fi[0] += m.forces[3 * g + 0];
    fi[1] += m.forces[3 * g + 1];
    fi[2] += m.forces[3 * g + 2];
  }
  if (eflag_global) eng_vdwl += r.energy;
  if (eflag_atom)
    for (int g = 0; g < n_local; g++) eatom[m.atom_of[g]] += m.energies[g];
  if (vflag_global) add_voigt6(virial, w9);
  if (vflag_atom)
    for (int g = 0; g < n_total; g++) add_voigt6(vatom[m.atom_of[g]], &m.virials[9 * static_cast<size_t>(g)]);
  if (cvflag_atom)
    for (int g = 0; g < n_total; g++) {
      const double *v = &m.virials[9 * static_cast<size_t>(g)];
      double *cva = cvatom[m.atom_of[g]];
      // xx yy zz xy xz yz yx zx zy
      add_voigt6(cva, v);
      cva[6] += v[3];
      cva[7] += v[6];
      cva[8] += v[7];
    }
}

/* ----------------------------------------------------------------------
   Exchange of one layer's per-atom rows (impl->width values each) through impl->stage, which
   is indexed like LAMMPS's atoms. Forward: owners' rows to their ghost copies (periodic images
   included; features are translation invariant, so pbc shifts are ignored). Reverse: ghost rows
   added into their owners' rows.
------------------------------------------------------------------------- */

int PairHydraGNN::pack_forward_comm(int n, int *list, double *buf, int /*pbc_flag*/, int * /*pbc*/)
{
  const int w = impl->width;
  const double *s = impl->stage.data();
  for (int i = 0; i < n; i++)
    std::memcpy(buf + static_cast<size_t>(i) * w, s + static_cast<size_t>(list[i]) * w, w * sizeof(double));
  return n * w;
}

void PairHydraGNN::unpack_forward_comm(int n, int first, double *buf)
{
  const int w = impl->width;
  std::memcpy(impl->stage.data() + static_cast<size_t>(first) * w, buf, static_cast<size_t>(n) * w * sizeof(double));
}

int PairHydraGNN::pack_reverse_comm(int n, int first, double *buf)
{
  const int w = impl->width;
  std::memcpy(buf, impl->stage.data() + static_cast<size_t>(first) * w, static_cast<size_t>(n) * w * sizeof(double));
  return n * w;
}

void PairHydraGNN::unpack_reverse_comm(int n, int *list, double *buf)
{
  const int w = impl->width;
  double *s = impl->stage.data();
  for (int i = 0; i < n; i++) {
    double *row = s + static_cast<size_t>(list[i]) * w;
    const double *in = buf + static_cast<size_t>(i) * w;
    for (int k = 0; k < w; k++) row[k] += in[k];
  }
}

double PairHydraGNN::memory_usage()
{
  const Impl &m = *impl;
  double bytes = Pair::memory_usage();
  bytes += m.stage.capacity() * sizeof(double);
  bytes += (m.pos.capacity() + m.forces.capacity() + m.energies.capacity() + m.virials.capacity()) *
      sizeof(double);
  bytes += (m.centers.capacity() + m.neighbors.capacity()) * sizeof(int64_t);
  bytes += (m.row_of.capacity() + m.atom_of.capacity() + m.numbers.capacity()) * sizeof(int);
  return bytes;
}
