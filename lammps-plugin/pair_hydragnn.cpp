/** pair_style hydragnn: the LAMMPS side of the hydragnn-rs engine. It builds the graph of local
 *  atoms and their ghost neighbours from LAMMPS's full neighbour list, drives the engine's
 *  layer-by-layer evaluation (hgnn_eval_*), and moves node features and their gradients between
 *  ranks with LAMMPS's own forward/reverse communication, so the ghost shell is one model cutoff
 *  (+ skin) wide. All model logic lives in libhydragnn.so; this file only moves data.
 *
 *  Syntax:
 *    pair_style hydragnn [device cpu|cuda] [precision float32|float64] [branch NAME] [threads N]
 *                        [compress yes|no] [charge Q] [spin S] [drive mean|first]
 *                        [uncertainty every N [file model_devi.out] [atomic]]
 *    pair_coeff * * model.file Elem1 ... ElemN      (one element per atom type; NULL skips a type)
 *
 *  An ensemble file (hydragnn ensemble a.model b.model ... -o ens.model) is a committee of K
 *  members: each member runs the layer-by-layer protocol below with its own ghost exchange
 *  (hgnn_eval_begin_member), and the plugin combines them. `drive mean` (the default, as the
 *  engine's) moves the atoms with the committee mean (every member every step); `drive first`
 *  with member 0 (DeePMD-kit's choice; only member 0 runs on steps without a deviation).
 *  `uncertainty every N` computes the model deviation (docs/ensembles.md) on every step that is
 *  a multiple of N and on every step whose energy is tallied (thermo, compute pair, fix halt),
 *  writes DeePMD-kit's model_devi file on the multiples of N (rank 0), puts the global values
 *  first in the pair style's vector (c_ID[1..7] of `compute ID all pair hydragnn`: max_devi_f
 *  min_devi_f avg_devi_f max_devi_v min_devi_v avg_devi_v devi_e) and the per-atom force
 *  deviation in extract_peratom("model_devi_f") (fix pair, trigger "model_devi_f_flag").
 *  Each member's forces on ghost atoms are reverse-communicated to their owners first, so the
 *  deviation of an owned atom is complete; max/min/avg are MPI reductions (rank invariant).
 *
 *  The other heads of the branch in use: graph heads (e.g. a HOMO-LUMO gap) are the pair style's
 *  global vector (nextra, pvector), read with `compute ID all pair hydragnn` as c_ID[k]; the k <->
 *  head mapping is written to the log by rank 0. They are pooled across ranks (partials reduced
 *  with MPI_Allreduce, then the engine finishes the heads), so they do not depend on the number
 *  of ranks, and are computed on the steps where the energy is. Node heads are per-atom arrays
 *  through extract_peratom(name) (e.g. `fix pair`), on the same steps.
 *
 *  A graph-level energy (HydraGNN's foundation models: summed node features through an MLP) is
 *  all-reduced the same way every step before the backward pass (reduce_energy); per-atom
 *  energies are refused. `charge Q spin S` set the system's attributes for models conditioned
 *  on them (set_graph_attr).
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

#include "hydragnn.hpp"

#include <dlfcn.h>

#include <algorithm>
#include <array>
#include <cmath>
#include <cstdio>
#include <limits>
#include <map>
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
   the library this plugin was built against (HYDRAGNN_LIB_DEFAULT, set by build.sh). The entry
   points are resolved with dlsym into a hydragnn::Api (hydragnn.hpp). */
struct Engine {
  void *handle = nullptr;
  std::string path;
  hydragnn::Api api;
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
// in `err` when it cannot be loaded or its C ABI version is not the plugin's.
const hydragnn::Api *engine(std::string &err)
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
      const std::string missing = e.api.resolve([](const char *name) { return dlsym(e.handle, name); });
      if (e.api.hgnn_abi_version && e.api.hgnn_abi_version() != HGNN_ABI_VERSION) {
        error = abi_mismatch(e.path, e.api.hgnn_abi_version(), HGNN_ABI_VERSION);
        e.handle = nullptr;
      } else if (!missing.empty()) {
        error = "engine library '" + e.path + "' lacks " + missing + " (older than the plugin?)";
        e.handle = nullptr;
      }
    }
  }
  err = error;
  return e.handle ? &e.api : nullptr;
}
}    // namespace

struct PairHydraGNN::Impl {
  const hydragnn::Api *api = nullptr;

  // options from pair_style
  int device = HGNN_DEVICE_CPU;
  int dtype = HGNN_DTYPE_FLOAT64;
  int threads = 0;    // 0: HYDRAGNN_NUM_THREADS if set, else 1 per rank
  std::string branch;
  int compress = 1;    // fast path (tabulated radial filters, fused kernels) where available
  std::map<std::string, double> graph_attr;    // charge, spin: for models conditioned on them

  // the model, from pair_coeff
  std::string path;    // as given to pair_coeff
  hydragnn::Model model;
  double cutoff = 0.0;
  int nlayers = 0;
  std::vector<int> widths;         // values per atom in the features entering layer l (0..L)
  std::vector<int> type2z;         // LAMMPS type -> atomic number, -1 for NULL

  // per-step graph: graph rows are the mapped local atoms, then the ghost neighbours
  std::vector<int> row_of;    // LAMMPS index -> graph row, -1 when the atom is not in the graph
  std::vector<int> atom_of;   // graph row -> LAMMPS index
  hydragnn::Graph graph;
  hydragnn::Eval eval;        // this step's evaluation (empty on a rank without local atoms)
  std::vector<double> forces, energies, virials;

  // the heads of the branch in use; graph heads other than the energy are pvector's entries
  std::vector<hgnn_head_t> heads;
  int64_t n_sums = 0, n_maxs = 0;    // sizes of the graph-head partials
  int64_t n_graph_values = 0;        // values of all graph heads (the energy included)
  std::vector<int> pv_index;         // pvector[k] = finished graph values[pv_index[k]]
  bool pooled_energy = false;        // graph-level energy: reduced over ranks every step
  int64_t energy_value = 0;          // the energy's index in the finished graph values
  double pooled_e = 0.0;             // this step's graph-level energy (every rank)
  // node heads: per LAMMPS atom, dim values each (extract_peratom)
  std::vector<std::string> node_names;
  std::vector<int> node_dims;
  std::vector<std::vector<double>> node_values;    // per node head, nmax x dim
  std::vector<std::vector<double *>> node_rows;    // row pointers for 2-d (dim > 1) access
  int node_nmax = 0;
  int node_trigger = 0;    // set through extract("NAME_flag") (fix pair): node heads on this step

  // outside the model's domain: the shortest distance of its training data (0: not recorded),
  // this step's closest mapped pair on this rank, and whether rank 0 has warned (once per run)
  double train_dmin = 0.0;
  double close_rsq = 0.0;
  int close_i = -1, close_j = -1;
  bool warned_close = false;

  // the exchange buffer, indexed like LAMMPS's atoms (local + ghost), `width` values per atom
  std::vector<double> stage;
  int width = 0;

  // an ensemble file's committee (K = 1 for a model file) and its model deviation
  int n_members = 1;
  std::vector<std::vector<int>> member_widths;    // per member, values per atom entering layer l
  int member = 0;                                 // the member being evaluated
  int drive = HGNN_DRIVE_MEAN;
  int devi_every = 0;                             // uncertainty every N (0: off)
  std::string devi_path;                          // the model_devi file (rank 0 writes it)
  bool devi_atomic = false;                       // per-atom force deviations on each line
  FILE *devi_fp = nullptr;
  int pv_offset = 0;                              // deviation entries before the graph heads
  int devi_trigger = 0;                           // extract("model_devi_f_flag") (fix pair)
  std::vector<double> devi_atom;                  // per LAMMPS atom, this step's force deviation
  // this step's members: forces (n_total x 3), local energy share, virial, per-atom arrays
  std::vector<std::vector<double>> mforces, menergies, mvirials;
  std::vector<std::array<double, 9>> mvirial;
  std::vector<double> menergy;
  int n_eval_ranks = 0;    // ranks with local atoms (a graph-level energy ensemble's step)
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
  if (impl->devi_fp) fclose(impl->devi_fp);
  delete impl;
  delete[] pvector;
  if (allocated) {
    memory->destroy(setflag);
    memory->destroy(cutsq);
    memory->destroy(scale);
    delete[] map;
    map = nullptr;
  }
}

void PairHydraGNN::allocate()
{
  allocated = 1;
  const int n = atom->ntypes;
  memory->create(setflag, n + 1, n + 1, "pair:setflag");
  memory->create(cutsq, n + 1, n + 1, "pair:cutsq");
  memory->create(scale, n + 1, n + 1, "pair:scale");
  map = new int[n + 1];
  for (int i = 0; i <= n; i++) {
    map[i] = -1;
    for (int j = 0; j <= n; j++) {
      setflag[i][j] = 0;
      scale[i][j] = 1.0;
    }
  }
}

/* ----------------------------------------------------------------------
   extract("scale"): the per-type-pair scale factors (dim 2) that fix adapt changes. The energy of
   a many-body model does not split into pairs, so only a uniform scale is supported: every pair
   of mapped types must carry the same factor, which multiplies energy, forces and virials.
------------------------------------------------------------------------- */

void *PairHydraGNN::extract(const char *str, int &dim)
{
  dim = 2;
  if (strcmp(str, "scale") == 0) return (void *) scale;
  // fix pair's trigger of the per-atom force deviation: computed on the steps it asks for
  if (impl->devi_every > 0 && strcmp(str, "model_devi_f_flag") == 0) {
    dim = 0;
    return (void *) &impl->devi_trigger;
  }
  // fix pair's trigger of a node head NAME: "NAME_flag", an int that requests it on a step
  for (const auto &name : impl->node_names)
    if (name + "_flag" == str) {
      dim = 0;
      return (void *) &impl->node_trigger;
    }
  return nullptr;
}

// The one scale factor of the mapped type pairs (1 when none is set); checked on every rank alike.
double PairHydraGNN::uniform_scale()
{
  const int n = atom->ntypes;
  double s = 1.0;
  bool first = true;
  for (int i = 1; i <= n; i++)
    for (int j = i; j <= n; j++) {    // i <= j: the pairs fix adapt sets
      if (impl->type2z[i] < 0 || impl->type2z[j] < 0) continue;
      if (first) {
        s = scale[i][j];
        first = false;
      } else if (scale[i][j] != s) {
        error->all(FLERR,
                   "pair_style hydragnn: the scale of atom types {} and {} ({}) differs from "
                   "another pair's ({}); a many-body model supports one scale for all types",
                   i, j, scale[i][j], s);
      }
    }
  return s;
}

// Failure of an engine call inside compute(): it may happen on one rank only, so it goes
// through error->one (error->all would wait at a barrier for ranks that never arrive).
void PairHydraGNN::fail_one(const std::exception &e)
{
  error->one(FLERR, "pair_style hydragnn: {} (rank {}, step {}, {} local atoms)", e.what(),
             comm->me, update->ntimestep, atom->nlocal);
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
  m.graph_attr.clear();
  m.drive = HGNN_DRIVE_MEAN;
  m.devi_every = 0;
  m.devi_path = "model_devi.out";
  m.devi_atomic = false;
  if (m.devi_fp) fclose(m.devi_fp);    // pair_style re-issued: init_style opens it again
  m.devi_fp = nullptr;
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
    } else if (key == "charge" || key == "spin") {
      m.graph_attr[key] = utils::numeric(FLERR, val, false, lmp);
    } else if (key == "branch" || key == "head") {
      m.branch = val;
    } else if (key == "threads") {
      // the engine's range check (1..=1024; libgomp crashed later for >= 2048, ran out of
      // memory for 10^6); the count applies process-wide, as the model load would set it
      const long long n = utils::bnumeric(FLERR, val, false, lmp);
      if (n < 1 || n > std::numeric_limits<int>::max() ||
          m.api->hgnn_set_num_threads(static_cast<int>(n)) != HGNN_SUCCESS)
        error->all(FLERR, "pair_style hydragnn: threads {}: {}", val,
                   (n < 1 || n > std::numeric_limits<int>::max())
                       ? "out of range: it must be in 1..=1024"
                       : m.api->hgnn_last_error());
      m.threads = static_cast<int>(n);
    } else if (key == "drive") {
      if (val == "mean")
        m.drive = HGNN_DRIVE_MEAN;
      else if (val == "first")
        m.drive = HGNN_DRIVE_FIRST;
      else
        error->all(FLERR, "pair_style hydragnn: drive must be mean or first, got '{}'", val);
    } else if (key == "uncertainty") {
      // uncertainty every N [file PATH] [atomic]
      if (val != "every")
        error->all(FLERR,
                   "pair_style hydragnn: expected 'uncertainty every N [file PATH] [atomic]', "
                   "got 'uncertainty {}'",
                   val);
      if (iarg + 2 >= narg)
        error->all(FLERR, "pair_style hydragnn: 'uncertainty every' needs N (steps between "
                   "model deviation outputs)");
      const std::string n = arg[iarg + 2];
      const long long every = utils::is_integer(n) ? std::atoll(n.c_str()) : 0;
      if (every < 1 || every > std::numeric_limits<int>::max())
        error->all(FLERR,
                   "pair_style hydragnn: 'uncertainty every N' needs a positive integer N (steps "
                   "between model deviation outputs), got '{}'",
                   n);
      m.devi_every = static_cast<int>(every);
      iarg += 1;    // with the loop's 2: past 'uncertainty every N'
      while (iarg + 2 < narg) {
        const std::string next = arg[iarg + 2];
        if (next == "file") {
          if (iarg + 3 >= narg)
            error->all(FLERR, "pair_style hydragnn: 'uncertainty ... file' needs a file name");
          m.devi_path = arg[iarg + 3];
          iarg += 2;
        } else if (next == "atomic") {
          m.devi_atomic = true;
          iarg += 1;
        } else {
          break;
        }
      }
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
                 "threads, compress, charge, spin, drive, uncertainty)",
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

  const hydragnn::Api &api = *m.api;
  hgnn_options_t opts = api.hgnn_options_default();
  opts.device = m.device;
  opts.dtype = m.dtype;
  int threads = m.threads;
  if (threads == 0 && !std::getenv("HYDRAGNN_NUM_THREADS")) threads = 1;
  opts.num_threads = threads;    // 0 lets the engine read HYDRAGNN_NUM_THREADS
  opts.branch = m.branch.empty() ? nullptr : m.branch.c_str();

  try {
    m.model = hydragnn::Model(api, file, opts);
  } catch (hydragnn::Error &) {
    error->all(FLERR, "pair_style hydragnn: cannot load model file '{}': {}", file, api.hgnn_last_error());
  }
  int maxw = 0;
  std::string info, desc;
  try {
    m.model.set_compress(m.compress != 0);
    m.cutoff = m.model.cutoff();
    m.nlayers = m.model.num_layers();
    m.widths.assign(m.nlayers + 1, 0);
    for (int l = 0; l <= m.nlayers; l++) {
      m.widths[l] = m.model.feature_width(l);
      // layer 0's features come from the species alone and are never exchanged
      if (l > 0 && l < m.nlayers) maxw = std::max(maxw, m.widths[l]);
    }
    info = m.model.info();
    desc = m.model.path_description();
    m.train_dmin = m.model.min_training_distance();
    // an ensemble's members share species, cutoff and layer count, not their widths
    m.n_members = m.model.ensemble_size();
    m.member_widths.assign(m.n_members, m.widths);
    for (int k = 1; k < m.n_members; k++)
      for (int l = 0; l <= m.nlayers; l++) {
        m.member_widths[k][l] = m.model.member_feature_width(k, l);
        if (l > 0 && l < m.nlayers) maxw = std::max(maxw, m.member_widths[k][l]);
      }
  } catch (hydragnn::Error &) {
    error->all(FLERR, "pair_style hydragnn: model file '{}': {}", file, api.hgnn_last_error());
  }
  if (m.devi_every > 0 && m.n_members < 2)
    error->all(FLERR,
               "pair_style hydragnn: 'uncertainty every {}' needs an ensemble file (hydragnn "
               "ensemble a.model b.model ... -o ens.model), but '{}' is a single model: its "
               "model deviation would be 0",
               m.devi_every, file);
  comm_forward = maxw;
  // the deviation's exchange: every member's forces on ghost atoms go to their owners
  comm_reverse = std::max(maxw, m.devi_every > 0 ? 3 * m.n_members : 0);
  set_graph_attr(file);

  if (comm->me == 0) {
    utils::logmesg(lmp,
                   "pair_style hydragnn: engine {}, model '{}': cutoff {} A, {} layers, "
                   "{} on {}, {} torch thread(s) per rank, per-layer ghost exchange of up to {} "
                   "values per atom\n  model info: {}\n",
                   api.hgnn_version(), file, m.cutoff, m.nlayers, api.hgnn_precision_name(m.dtype),
                   m.device == HGNN_DEVICE_CUDA ? "cuda" : "cpu",
                   threads > 0 ? std::to_string(threads) : std::string("HYDRAGNN_NUM_THREADS"),
                   maxw, info.empty() ? "{}" : info);
    utils::logmesg(lmp, "pair_style hydragnn: {}\n", desc);
    if (m.n_members > 1)
      utils::logmesg(lmp,
                     "pair_style hydragnn: ensemble of {} members, each evaluated layer by layer "
                     "with its own ghost exchange; drive {}: {}\n",
                     m.n_members, m.drive == HGNN_DRIVE_FIRST ? "first" : "mean",
                     m.drive == HGNN_DRIVE_FIRST
                         ? "member 0 moves the atoms (the other members run on deviation steps only)"
                         : "the committee mean moves the atoms (every member every step)");
    if (m.devi_every > 0)
      utils::logmesg(lmp,
                     "pair_style hydragnn: model deviation every {} steps (and on every step whose "
                     "energy is tallied) to '{}'{}; as c_ID[k] of 'compute ID all pair hydragnn': "
                     "[1] max_devi_f [2] min_devi_f [3] avg_devi_f [4] max_devi_v [5] min_devi_v "
                     "[6] avg_devi_v [7] devi_e; per atom: extract_peratom model_devi_f (fix "
                     "pair)\n",
                     m.devi_every, m.devi_path, m.devi_atomic ? " with per-atom force deviations" : "");
  }
  describe_heads();
}

/* ----------------------------------------------------------------------
   The per-structure attributes a model is conditioned on (HydraGNN's total charge and spin),
   from pair_style's `charge Q spin S`: every one the model names must be given, and no other.
   Collective (every rank parses the same pair_style).
------------------------------------------------------------------------- */

void PairHydraGNN::set_graph_attr(const std::string &file)
{
  Impl &m = *impl;
  std::vector<std::string> names;
  try {
    names = m.model.graph_attr_names();
  } catch (hydragnn::Error &) {
    error->all(FLERR, "pair_style hydragnn: model file '{}': {}", file, m.api->hgnn_last_error());
  }
  for (const auto &kv : m.graph_attr)
    if (std::find(names.begin(), names.end(), kv.first) == names.end())
      error->all(FLERR, "pair_style hydragnn: keyword '{}' given, but model file '{}' is not conditioned on it{}",
                 kv.first, file, names.empty() ? std::string() : " (it takes: " + utils::join_words(names, " ") + ")");
  if (names.empty()) return;
  std::vector<double> values;
  std::string usage;
  for (const auto &n : names) usage += " " + n + " VALUE";
  for (const auto &n : names) {
    const auto it = m.graph_attr.find(n);
    if (it == m.graph_attr.end())
      error->all(FLERR,
                 "pair_style hydragnn: model file '{}' is conditioned on the system's {}: give "
                 "them with pair_style hydragnn ...{}",
                 file, utils::join_words(names, " and "), usage);
    values.push_back(it->second);
  }
  try {
    m.model.set_graph_attr(values);
  } catch (hydragnn::Error &) {
    error->all(FLERR, "pair_style hydragnn: {}", m.api->hgnn_last_error());
  }
  if (comm->me == 0) {
    std::string given;
    for (size_t k = 0; k < names.size(); k++) given += fmt::format(" {} = {}", names[k], values[k]);
    utils::logmesg(lmp, "pair_style hydragnn: the model is conditioned on the system's{}\n", given);
  }
}

/* ----------------------------------------------------------------------
   The branch in use and its heads: rank 0 logs which branch runs (and, for a multi-branch model
   without `branch NAME`, how to choose another), the pvector <-> graph head mapping and the node
   heads. Collective (every rank loads the same model).
------------------------------------------------------------------------- */

void PairHydraGNN::describe_heads()
{
  Impl &m = *impl;
  std::vector<std::string> branches;
  int active = 0;
  try {
    branches = m.model.branch_names();
    active = m.model.active_branch();
    m.heads = m.model.heads();
    const auto sizes = m.model.head_partials_size();
    m.n_sums = sizes.first;
    m.n_maxs = sizes.second;
    m.pooled_energy = m.model.energy_is_pooled();
  } catch (hydragnn::Error &) {
    error->all(FLERR, "pair_style hydragnn: model file '{}': {}", m.path, m.api->hgnn_last_error());
  }
  m.pv_index.clear();
  m.node_names.clear();
  m.node_dims.clear();
  std::string graph_map, node_list;
  int64_t at = 0;
  m.pv_offset = m.devi_every > 0 ? 7 : 0;    // the model deviation comes first
  for (const auto &h : m.heads) {
    const std::string name = h.name;
    if (h.kind == HGNN_HEAD_GRAPH) {
      for (int d = 0; d < h.dim; d++, at++) {
        if (name == "energy") {
          m.energy_value = at;
          continue;
        }
        m.pv_index.push_back(static_cast<int>(at));
        graph_map += fmt::format(" [{}] {}{}", m.pv_offset + m.pv_index.size(), name,
                                 h.dim > 1 ? fmt::format("[{}]", d + 1) : std::string());
      }
    } else {
      m.node_names.push_back(name);
      m.node_dims.push_back(h.dim);
      node_list += fmt::format(" {} ({} value{} per atom)", name, h.dim, h.dim > 1 ? "s" : "");
    }
  }
  m.n_graph_values = at;
  m.node_values.assign(m.node_names.size(), {});
  m.node_rows.assign(m.node_names.size(), {});
  m.node_nmax = 0;
  delete[] pvector;
  pvector = nullptr;
  nextra = m.pv_offset + static_cast<int>(m.pv_index.size());
  if (nextra > 0) {
    pvector = new double[nextra];
    for (int k = 0; k < nextra; k++) pvector[k] = 0.0;
  }

  if (comm->me == 0) {
    const std::string &b = branches.at(active);
    if (branches.size() > 1 && m.branch.empty()) {
      std::string all;
      for (const auto &x : branches) all += (all.empty() ? "" : ", ") + x;
      utils::logmesg(lmp,
                     "pair_style hydragnn: the model has {} branches ({}) and none was named: "
                     "using branch '{}' (choose another with pair_style hydragnn branch NAME)\n",
                     branches.size(), all, b);
    } else {
      utils::logmesg(lmp, "pair_style hydragnn: using branch '{}'\n", b);
    }
    if (!m.pv_index.empty())
      utils::logmesg(lmp,
                     "pair_style hydragnn: graph heads of branch '{}' as c_ID[k] of "
                     "'compute ID all pair hydragnn':{}\n",
                     b, graph_map);
    if (!node_list.empty())
      utils::logmesg(lmp, "pair_style hydragnn: node heads (extract_peratom, e.g. fix pair):{}\n",
                     node_list);
    if (m.pooled_energy)
      utils::logmesg(lmp,
                     "pair_style hydragnn: the energy of branch '{}' is graph-level (summed node "
                     "features through an MLP): every step the ranks' partial sums are all-reduced "
                     "before the backward pass; per-atom energies (compute pe/atom) are not defined\n",
                     b);
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
  std::vector<int32_t> numbers;
  std::string units;
  try {
    symbols = m.model.species_symbols();
    numbers = m.model.species();
    units = m.model.lammps_units();
  } catch (hydragnn::Error &) {
    error->all(FLERR, "pair_style hydragnn: model file '{}': {}", m.path, m.api->hgnn_last_error());
  }
  if (units != update->unit_style)
    error->all(FLERR, "pair_style hydragnn: model file '{}' is in LAMMPS units '{}' but the input "
               "uses 'units {}'", m.path, units, update->unit_style);

  // LAMMPS's own type -> element mapping (elements, nelements, map; NULL maps to -1), then each
  // element to the model's atomic number
  map_element2type(ntypes, arg + 3, false);
  std::string known;
  for (const auto &s : symbols) known += (known.empty() ? "" : " ") + s;
  std::vector<int> elem2z(nelements, -1);
  for (int e = 0; e < nelements; e++) {
    const auto k = std::find(symbols.begin(), symbols.end(), elements[e]) - symbols.begin();
    if (k == static_cast<long>(symbols.size())) {
      int t = 1;
      while (t < ntypes && map[t] != e) t++;
      error->all(FLERR,
                 "pair_coeff for hydragnn: element '{}' (atom type {}) is not in model file '{}' "
                 "(its elements: {})",
                 elements[e], t, m.path, known);
    }
    elem2z[e] = numbers[k];
  }
  m.type2z.assign(ntypes + 1, -1);
  for (int t = 1; t <= ntypes; t++)
    if (map[t] >= 0) m.type2z[t] = elem2z[map[t]];

  int count = 0;
  for (int i = 1; i <= ntypes; i++)
    for (int j = i; j <= ntypes; j++) {
      setflag[i][j] = setflag[j][i] = (m.type2z[i] >= 0 && m.type2z[j] >= 0) ? 1 : 0;
      count += setflag[i][j];
    }
  if (count == 0) error->all(FLERR, "pair_coeff for hydragnn maps no atom type to an element");

  if (comm->me == 0) {
    std::string mapping;
    for (int t = 1; t <= ntypes; t++)
      mapping += fmt::format(" {}->{}", t, map[t] >= 0 ? elements[map[t]] : "NULL");
    utils::logmesg(lmp, "pair_style hydragnn: atom types to elements:{}\n", mapping);
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
  // With bonds, LAMMPS leaves a bonded pair (1-2, 1-3, 1-4 neighbours) out of every neighbour
  // list when its special_bonds factors are both 0 (the default, lj/coul 0 0 0): the model would
  // not see the bonds at all (ethanol: -300.08 instead of -310.01 eV). Other factors keep the
  // pairs in the list, and the model sees them whole (it ignores the factors).
  if (atom->molecular != Atom::ATOMIC && atom->nbonds > 0)
    for (int k = 1; k <= 3; k++)
      if (force->special_lj[k] == 0.0 && force->special_coul[k] == 0.0)
        error->all(FLERR,
                   "pair_style hydragnn: special_bonds lj {} {} {} coul {} {} {} removes bonded "
                   "1-{} neighbours from the neighbour list, so the model would not see those "
                   "pairs: a machine-learned potential needs every pair within its cutoff; use "
                   "'special_bonds lj/coul 1.0 1.0 1.0'",
                   force->special_lj[1], force->special_lj[2], force->special_lj[3],
                   force->special_coul[1], force->special_coul[2], force->special_coul[3], k + 1);
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

  // the model_devi file: DeePMD-kit's layout, written by rank 0 (which alone may fail to open it)
  Impl &m = *impl;
  if (m.devi_every > 0 && comm->me == 0 && !m.devi_fp) {
    m.devi_fp = fopen(m.devi_path.c_str(), "w");
    if (!m.devi_fp)
      error->one(FLERR, "pair_style hydragnn: cannot open the model deviation file '{}' for "
                 "writing: {}", m.devi_path, utils::getsyserror());
    fmt::print(m.devi_fp, "#{:>11} {:>24} {:>24} {:>24} {:>24} {:>24} {:>24}{}\n", "step",
               "max_devi_v", "min_devi_v", "avg_devi_v", "max_devi_f", "min_devi_f", "avg_devi_f",
               m.devi_atomic ? "   atm_devi_f(N): per atom in atom-ID order" : "");
    fflush(m.devi_fp);
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
  // eflag_atom is the same on every rank, so every rank stops here together
  if (m.pooled_energy && eflag_atom)
    error->all(FLERR,
               "pair_style hydragnn: per-atom energies (compute pe/atom, pair/local, ...) are not "
               "defined for model '{}': the energy of its branch is graph-level (node features "
               "summed over the whole system, then an MLP), not a sum of per-atom energies",
               m.path);
  const double factor = uniform_scale();
  build_graph();
  if (!m.warned_close && m.train_dmin > 0.0) warn_close_pair();
  // The model deviation: on the multiples of N, and whenever the energy is tallied (so that
  // c_ID[1..7] read by thermo, a variable or fix halt are this step's) or fix pair asks.
  const bigint step = update->ntimestep;
  const bool devi_step =
      m.devi_every > 0 && (step % m.devi_every == 0 || eflag_global || m.devi_trigger);
  // the members that run: all under drive mean or on a deviation step, else member 0 alone
  const int K = (devi_step || m.drive == HGNN_DRIVE_MEAN) ? m.n_members : 1;
  const bool want_virial = vflag_global || devi_step;
  m.mforces.resize(K);
  m.menergies.resize(K);
  m.mvirials.resize(K);
  m.mvirial.resize(K);
  m.menergy.assign(K, 0.0);
  if (m.pooled_energy && m.n_members > 1) {
    int mine = m.graph.n_local > 0 ? 1 : 0;
    MPI_Allreduce(&mine, &m.n_eval_ranks, 1, MPI_INT, MPI_SUM, world);
  }
  for (int k = 0; k < K; k++) {
    m.member = k;
    // A rank without local atoms has nothing to evaluate, but it still takes part in every
    // exchange (it may relay ghost rows between its neighbours).
    begin_evaluation();
    forward_pass();
    readout();
    if (m.pooled_energy) reduce_energy();
    if (k == 0) {    // the other heads are member 0's
      const bool graph = eflag_global && !m.pv_index.empty();
      const bool node = !m.node_names.empty() && (eflag_global || eflag_atom || m.node_trigger);
      if (graph || node) other_heads(graph, node);
    }
    backward_pass();
    member_results(k, want_virial);
    m.eval.reset();
  }
  m.member = 0;
  tally_results(factor, K);
  if (devi_step) model_deviation(factor);
}

/* ----------------------------------------------------------------------
   The graph of this step: rows are the mapped local atoms first, then the ghosts that are
   neighbours (within the model cutoff) of one of them; edges from the full neighbour list.
------------------------------------------------------------------------- */

void PairHydraGNN::build_graph()
{
  Impl &m = *impl;
  double **x = atom->x;
  const int *type = atom->type;
  const int nlocal = atom->nlocal;
  const int nall = nlocal + atom->nghost;
  const double cutsq_model = m.cutoff * m.cutoff;

  hydragnn::Graph &g = m.graph;
  g.clear();
  m.row_of.assign(nall, -1);
  m.atom_of.clear();
  auto add_row = [&](int i) {
    m.row_of[i] = static_cast<int>(m.atom_of.size());
    m.atom_of.push_back(i);
    g.positions.insert(g.positions.end(), x[i], x[i] + 3);
    g.numbers.push_back(m.type2z[type[i]]);
  };
  for (int i = 0; i < nlocal; i++)
    if (m.type2z[type[i]] >= 0) add_row(i);
  g.n_local = static_cast<int64_t>(m.atom_of.size());

  const int inum = list->inum;
  const int *ilist = list->ilist;
  const int *numneigh = list->numneigh;
  int **firstneigh = list->firstneigh;
  m.close_rsq = std::numeric_limits<double>::infinity();
  m.close_i = m.close_j = -1;
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
      const double rsq = dx * dx + dy * dy + dz * dz;
      if (rsq >= cutsq_model) continue;
      // the engine's test (|r|^2 < 1e-20), here so that the message names LAMMPS atom IDs
      // rather than graph rows; may happen on one rank only
      if (rsq < 1e-20)
        error->one(FLERR,
                   "pair_style hydragnn: atoms {} and {} (atom IDs) are at the same position "
                   "({:.6g} {:.6g} {:.6g}) on step {}",
                   std::min(atom->tag[i], atom->tag[j]), std::max(atom->tag[i], atom->tag[j]),
                   x[i][0], x[i][1], x[i][2], update->ntimestep);
      if (rsq < m.close_rsq) {
        m.close_rsq = rsq;
        m.close_i = i;
        m.close_j = j;
      }
      if (m.row_of[j] < 0) add_row(j);
      g.centers.push_back(gi);
      g.neighbors.push_back(m.row_of[j]);
    }
  }
  // no shifts: ghost positions are already the periodic images
}

/* ----------------------------------------------------------------------
   Outside the model's domain: when a pair is closer than the shortest distance of the training
   data (recorded in the model file), rank 0 warns once per run with the distance and the two
   atom IDs. Collective: every rank takes part in the reduction, every step until it warned.
------------------------------------------------------------------------- */

void PairHydraGNN::warn_close_pair()
{
  Impl &m = *impl;
  struct {
    double r;
    int rank;
  } mine{m.close_i >= 0 ? std::sqrt(m.close_rsq) : std::numeric_limits<double>::infinity(), comm->me},
      least{};
  MPI_Allreduce(&mine, &least, 1, MPI_DOUBLE_INT, MPI_MINLOC, world);
  if (!(least.r < m.train_dmin)) return;
  tagint ids[2] = {0, 0}, all[2] = {0, 0};
  if (least.rank == comm->me) {
    ids[0] = std::min(atom->tag[m.close_i], atom->tag[m.close_j]);
    ids[1] = std::max(atom->tag[m.close_i], atom->tag[m.close_j]);
  }
  MPI_Allreduce(ids, all, 2, MPI_LMP_TAGINT, MPI_SUM, world);
  m.warned_close = true;
  if (comm->me == 0)
    error->warning(FLERR,
                   "pair_style hydragnn: atoms {} and {} are {:.4f} A apart, closer than any pair "
                   "in the model's training data ({:.4f} A): the model is extrapolating (step {}; "
                   "warned once per run)",
                   all[0], all[1], least.r, m.train_dmin, update->ntimestep);
}

// Starts this step's layer-by-layer evaluation (none on a rank without local atoms).
void PairHydraGNN::begin_evaluation()
{
  Impl &m = *impl;
  m.eval.reset();
  if (m.graph.n_local == 0) return;
  try {
    m.eval = m.n_members > 1 ? hydragnn::Eval(m.model, m.member, m.graph) : hydragnn::Eval(m.model, m.graph);
  } catch (hydragnn::Error &e) {
    fail_one(e);
  }
}

// Forward through every layer; before layer l > 0 the ghost rows of its input features are
// filled from their owners (forward communication). Layer 0's input depends on the species only.
void PairHydraGNN::forward_pass()
{
  Impl &m = *impl;
  const int nall = atom->nlocal + atom->nghost;
  const int n_local = static_cast<int>(m.graph.n_local);
  const int n_total = static_cast<int>(m.graph.n_total());
  try {
    for (int l = 0; l < m.nlayers; l++) {
      if (l > 0) {
        const int w = m.member_widths[m.member][l];
        m.width = w;
        m.stage.assign(static_cast<size_t>(nall) * w, 0.0);
        double *d = nullptr;
        if (m.eval) {
          int wd = 0;
          d = m.eval.features(l, wd);
          if (wd != w) error->one(FLERR, "pair_style hydragnn: feature width mismatch at layer {}", l);
          for (int g = 0; g < n_local; g++)
            std::memcpy(&m.stage[static_cast<size_t>(m.atom_of[g]) * w], d + static_cast<size_t>(g) * w,
                        w * sizeof(double));
        }
        comm->forward_comm(this, w);
        if (m.eval)
          for (int g = n_local; g < n_total; g++)
            std::memcpy(d + static_cast<size_t>(g) * w, &m.stage[static_cast<size_t>(m.atom_of[g]) * w],
                        w * sizeof(double));
      }
      if (m.eval) m.eval.forward_layer(l);
    }
  } catch (hydragnn::Error &e) {
    fail_one(e);
  }
}

// Energies of this rank's local atoms from the final features; seeds the backward pass.
void PairHydraGNN::readout()
{
  if (!impl->eval) return;
  try {
    impl->eval.readout();
  } catch (hydragnn::Error &e) {
    fail_one(e);
  }
}

// Graph-level energy: every rank's partial sums of the pooled features over its local atoms (a
// rank without atoms gives 0, and -inf for maxima) are all-reduced; each evaluation then gets the
// whole system's energy and dE/d(pooled features), which seeds its backward pass. Collective.
void PairHydraGNN::reduce_energy()
{
  Impl &m = *impl;
  std::vector<double> sums(m.n_sums, 0.0), maxs(m.n_maxs, -std::numeric_limits<double>::infinity());
  if (m.eval) {
    try {
      m.eval.head_partials(sums, maxs);
    } catch (hydragnn::Error &e) {
      fail_one(e);
    }
  }
  std::vector<double> rsums(m.n_sums), rmaxs(m.n_maxs);
  MPI_Allreduce(sums.data(), rsums.data(), static_cast<int>(m.n_sums), MPI_DOUBLE, MPI_SUM, world);
  if (m.n_maxs > 0)
    MPI_Allreduce(maxs.data(), rmaxs.data(), static_cast<int>(m.n_maxs), MPI_DOUBLE, MPI_MAX, world);
  try {
    m.pooled_e = m.eval ? m.eval.reduce(rsums, rmaxs)
                        : m.model.finish_heads(rsums, rmaxs, m.n_graph_values).at(m.energy_value);
  } catch (hydragnn::Error &e) {
    fail_one(e);
  }
}

// Backward through every layer; after layer l > 0 the ghost rows of the gradient are added into
// their owners' rows (reverse communication).
void PairHydraGNN::backward_pass()
{
  Impl &m = *impl;
  const int nall = atom->nlocal + atom->nghost;
  const int n_local = static_cast<int>(m.graph.n_local);
  const int n_total = static_cast<int>(m.graph.n_total());
  try {
    for (int l = m.nlayers - 1; l >= 0; l--) {
      if (m.eval) m.eval.backward_layer(l);
      if (l > 0) {
        const int w = m.member_widths[m.member][l];
        m.width = w;
        m.stage.assign(static_cast<size_t>(nall) * w, 0.0);
        double *d = nullptr;
        if (m.eval) {
          int wd = 0;
          d = m.eval.grads(l, wd);
          if (wd != w) error->one(FLERR, "pair_style hydragnn: gradient width mismatch at layer {}", l);
          for (int g = 0; g < n_total; g++)
            std::memcpy(&m.stage[static_cast<size_t>(m.atom_of[g]) * w], d + static_cast<size_t>(g) * w,
                        w * sizeof(double));
        }
        comm->reverse_comm(this, w);    // ghost rows are added into their owners' rows
        if (m.eval)
          for (int g = 0; g < n_local; g++)
            std::memcpy(d + static_cast<size_t>(g) * w, &m.stage[static_cast<size_t>(m.atom_of[g]) * w],
                        w * sizeof(double));
      }
    }
  } catch (hydragnn::Error &e) {
    fail_one(e);
  }
}

// Member k's results of the finished evaluation (zeros on a rank without local atoms): forces
// and virials of all graph rows, its share of the energy (a graph-level energy is rank 0's),
// per-atom energies and virials when LAMMPS asks for them.
void PairHydraGNN::member_results(int k, bool want_virial)
{
  Impl &m = *impl;
  const int n_local = static_cast<int>(m.graph.n_local);
  const int n_total = static_cast<int>(m.graph.n_total());
  const bool peratom_virial = vflag_atom || cvflag_atom;
  m.mforces[k].assign(static_cast<size_t>(n_total) * 3, 0.0);
  m.mvirial[k].fill(0.0);
  if (eflag_atom) m.menergies[k].assign(n_local, 0.0);
  if (peratom_virial) m.mvirials[k].assign(static_cast<size_t>(n_total) * 9, 0.0);
  if (m.eval) {
    hgnn_results_t r;
    r.energy = 0.0;
    r.forces = m.mforces[k].data();
    r.virial = want_virial ? m.mvirial[k].data() : nullptr;
    r.energies = eflag_atom ? m.menergies[k].data() : nullptr;
    r.virials = peratom_virial ? m.mvirials[k].data() : nullptr;
    try {
      m.eval.results(r);
    } catch (hydragnn::Error &e) {
      fail_one(e);
    }
    m.menergy[k] = r.energy;
  }
  // the graph-level energy belongs to the whole system: rank 0's share (eng_vdwl is summed).
  // A rank without atoms has only member 0's finish_heads, so for an ensemble the ranks that
  // evaluated share it instead.
  if (m.pooled_energy) {
    if (m.n_members == 1)
      m.menergy[k] = comm->me == 0 ? m.pooled_e : 0.0;
    else
      m.menergy[k] = m.eval && m.n_eval_ranks > 0 ? m.pooled_e / m.n_eval_ranks : 0.0;
  }
}

// The driving results (member 0, or the mean of the K members that ran), times the scale factor,
// into LAMMPS's accumulators: forces (ghost forces are summed into their owners by LAMMPS,
// newton_pair on), energies and virials.
void PairHydraGNN::tally_results(double factor, int K)
{
  Impl &m = *impl;
  const int n_local = static_cast<int>(m.graph.n_local);
  const int n_total = static_cast<int>(m.graph.n_total());
  const bool peratom_virial = vflag_atom || cvflag_atom;
  const bool mean = K > 1 && m.drive == HGNN_DRIVE_MEAN;
  const double w = factor / (mean ? K : 1);
  const int used = mean ? K : 1;
  // dst = w * (sum over the members used of their arrays)
  auto combine = [&](std::vector<std::vector<double>> &per_member, std::vector<double> &dst) {
    dst.assign(per_member[0].size(), 0.0);
    for (int k = 0; k < used; k++)
      for (size_t i = 0; i < dst.size(); i++) dst[i] += per_member[k][i];
    for (double &v : dst) v *= w;
  };
  combine(m.mforces, m.forces);
  double energy = 0.0, w9[9] = {0.0};
  for (int k = 0; k < used; k++) {
    energy += m.menergy[k];
    for (int c = 0; c < 9; c++) w9[c] += m.mvirial[k][c];
  }
  energy *= w;
  for (double &v : w9) v *= w;
  if (eflag_atom) combine(m.menergies, m.energies);
  if (peratom_virial) combine(m.mvirials, m.virials);

  double **f = atom->f;
  for (int g = 0; g < n_total; g++) {
    double *fi = f[m.atom_of[g]];
    fi[0] += m.forces[3 * g + 0];
    fi[1] += m.forces[3 * g + 1];
    fi[2] += m.forces[3 * g + 2];
  }
  if (eflag_global) eng_vdwl += energy;
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
   The model deviation of this step (all K members ran), as docs/ensembles.md defines it
   (population statistics, DeePMD-kit's): every member's forces on ghost atoms are added into
   their owners (reverse communication of 3K values per atom), so each owned atom has every
   member's complete force; its deviation is sqrt(<|F_k - <F>|^2>). Max / min / avg over the
   mapped atoms and the members' total energies and virials are MPI reductions, so every rank
   holds the same values whatever the decomposition. Scaled by |fix adapt scale| like the
   forces. Rank 0 holds them in pvector[0..6] and writes the model_devi line. Collective.
------------------------------------------------------------------------- */

void PairHydraGNN::model_deviation(double factor)
{
  Impl &m = *impl;
  const int K = m.n_members;
  const int nlocal = atom->nlocal;
  const int nall = nlocal + atom->nghost;
  const int n_local = static_cast<int>(m.graph.n_local);
  const int n_total = static_cast<int>(m.graph.n_total());
  const int w = 3 * K;
  const double scale_f = std::fabs(factor);

  m.width = w;
  m.stage.assign(static_cast<size_t>(nall) * w, 0.0);
  for (int k = 0; k < K; k++)
    for (int g = 0; g < n_total; g++)
      for (int c = 0; c < 3; c++)
        m.stage[static_cast<size_t>(m.atom_of[g]) * w + 3 * k + c] = m.mforces[k][3 * static_cast<size_t>(g) + c];
  comm->reverse_comm(this, w);

  m.devi_atom.assign(std::max(atom->nmax, 1), 0.0);
  double lmax = 0.0, lmin = std::numeric_limits<double>::infinity(), lsum[2] = {0.0, 0.0};
  for (int g = 0; g < n_local; g++) {
    const int i = m.atom_of[g];
    const double *row = &m.stage[static_cast<size_t>(i) * w];
    double mean[3] = {0.0, 0.0, 0.0};
    for (int k = 0; k < K; k++)
      for (int c = 0; c < 3; c++) mean[c] += row[3 * k + c];
    for (double &v : mean) v /= K;
    double var = 0.0;
    for (int k = 0; k < K; k++)
      for (int c = 0; c < 3; c++) var += (row[3 * k + c] - mean[c]) * (row[3 * k + c] - mean[c]);
    const double d = scale_f * std::sqrt(var / K);
    m.devi_atom[i] = d;
    lmax = std::max(lmax, d);
    lmin = std::min(lmin, d);
    lsum[0] += d;
    lsum[1] += 1.0;
  }
  double gmax = 0.0, gmin = 0.0, gsum[2] = {0.0, 0.0};
  MPI_Allreduce(&lmax, &gmax, 1, MPI_DOUBLE, MPI_MAX, world);
  MPI_Allreduce(&lmin, &gmin, 1, MPI_DOUBLE, MPI_MIN, world);
  MPI_Allreduce(lsum, gsum, 2, MPI_DOUBLE, MPI_SUM, world);
  const double natoms = gsum[1];

  // each member's total energy and virial
  std::vector<double> mine(static_cast<size_t>(K) * 10, 0.0), tot(mine.size());
  for (int k = 0; k < K; k++) {
    mine[10 * k] = m.menergy[k];
    for (int c = 0; c < 9; c++) mine[10 * k + 1 + c] = m.mvirial[k][c];
  }
  MPI_Allreduce(mine.data(), tot.data(), static_cast<int>(tot.size()), MPI_DOUBLE, MPI_SUM, world);
  auto std_of = [&](int col) {
    double mean = 0.0, var = 0.0;
    for (int k = 0; k < K; k++) mean += tot[10 * k + col];
    mean /= K;
    for (int k = 0; k < K; k++) var += (tot[10 * k + col] - mean) * (tot[10 * k + col] - mean);
    return scale_f * std::sqrt(var / K);
  };
  double vmax = 0.0, vmin = std::numeric_limits<double>::infinity(), vsum = 0.0;
  for (int c = 0; c < 9; c++) {
    const double v = natoms > 0 ? std_of(1 + c) / natoms : 0.0;
    vmax = std::max(vmax, v);
    vmin = std::min(vmin, v);
    vsum += v;
  }
  const double devi[7] = {gmax, natoms > 0 ? gmin : 0.0, natoms > 0 ? gsum[0] / natoms : 0.0,
                          vmax, vmin, vsum / 9.0, std_of(0)};
  for (int k = 0; k < 7; k++) pvector[k] = comm->me == 0 ? devi[k] : 0.0;

  if (update->ntimestep % m.devi_every != 0) return;
  // the per-atom deviations, in atom-ID order, gathered on rank 0
  std::vector<double> all;
  if (m.devi_atomic) {
    std::vector<double> pairs;
    for (int g = 0; g < n_local; g++) {
      pairs.push_back(static_cast<double>(atom->tag[m.atom_of[g]]));
      pairs.push_back(m.devi_atom[m.atom_of[g]]);
    }
    int count = static_cast<int>(pairs.size());
    std::vector<int> counts(comm->nprocs), displs(comm->nprocs, 0);
    MPI_Gather(&count, 1, MPI_INT, counts.data(), 1, MPI_INT, 0, world);
    int total = 0;
    if (comm->me == 0)
      for (int r = 0; r < comm->nprocs; r++) {
        displs[r] = total;
        total += counts[r];
      }
    std::vector<double> gathered(std::max(total, 1));
    MPI_Gatherv(pairs.data(), count, MPI_DOUBLE, gathered.data(), counts.data(), displs.data(),
                MPI_DOUBLE, 0, world);
    if (comm->me == 0) {
      std::vector<std::pair<double, double>> byid;
      for (int p = 0; p + 1 < total; p += 2) byid.emplace_back(gathered[p], gathered[p + 1]);
      std::sort(byid.begin(), byid.end());
      for (const auto &x : byid) all.push_back(x.second);
    }
  }
  if (comm->me == 0 && m.devi_fp) {
    std::string line = fmt::format("{:>12} {:>24.16e} {:>24.16e} {:>24.16e} {:>24.16e} {:>24.16e} {:>24.16e}",
                                   update->ntimestep, devi[3], devi[4], devi[5], devi[0], devi[1], devi[2]);
    for (double d : all) line += fmt::format(" {:.16e}", d);
    fmt::print(m.devi_fp, "{}\n", line);
    fflush(m.devi_fp);
  }
}

/* ----------------------------------------------------------------------
   The other heads of this step: graph heads on energy steps, node heads on energy steps, on
   per-atom energy steps and when fix pair's trigger (extract "NAME_flag") asks. Graph heads: every rank's partials (sums over
   its local atoms, maxima; a rank without local atoms gives 0 and -inf) are reduced over all
   ranks, then the engine finishes them (means divide by the total atom count, pool-first heads
   run their MLP on the pooled features); rank 0 holds the values in pvector and the others 0,
   since compute pair sums pvector over ranks. Node heads: the local atoms' values. The heads are
   not multiplied by the fix adapt scale (which scales the potential energy).
------------------------------------------------------------------------- */

void PairHydraGNN::other_heads(bool graph, bool node)
{
  Impl &m = *impl;
  if (graph) {
    std::vector<double> sums(m.n_sums, 0.0), maxs(m.n_maxs, -std::numeric_limits<double>::infinity());
    if (m.eval) {
      try {
        m.eval.head_partials(sums, maxs);
      } catch (hydragnn::Error &e) {
        fail_one(e);
      }
    }
    std::vector<double> rsums(m.n_sums), rmaxs(m.n_maxs);
    MPI_Allreduce(sums.data(), rsums.data(), static_cast<int>(m.n_sums), MPI_DOUBLE, MPI_SUM, world);
    if (m.n_maxs > 0)
      MPI_Allreduce(maxs.data(), rmaxs.data(), static_cast<int>(m.n_maxs), MPI_DOUBLE, MPI_MAX, world);
    std::vector<double> values;
    try {
      values = m.model.finish_heads(rsums, rmaxs, m.n_graph_values);
    } catch (hydragnn::Error &e) {
      fail_one(e);
    }
    for (size_t k = 0; k < m.pv_index.size(); k++)
      pvector[m.pv_offset + k] = comm->me == 0 ? values[m.pv_index[k]] : 0.0;
  }
  if (node) {
    const int nlocal = atom->nlocal;
    if (atom->nmax > m.node_nmax) m.node_nmax = atom->nmax;
    const int n_local = static_cast<int>(m.graph.n_local);
    for (size_t h = 0; h < m.node_names.size(); h++) {
      const int dim = m.node_dims[h];
      std::vector<double> &dst = m.node_values[h];
      dst.assign(static_cast<size_t>(m.node_nmax) * dim, 0.0);
      m.node_rows[h].resize(m.node_nmax);
      for (int i = 0; i < m.node_nmax; i++) m.node_rows[h][i] = &dst[static_cast<size_t>(i) * dim];
      if (!m.eval) continue;
      std::vector<double> v(static_cast<size_t>(n_local) * dim);
      try {
        m.eval.node_head(m.node_names[h].c_str(), v);
      } catch (hydragnn::Error &e) {
        fail_one(e);
      }
      for (int g = 0; g < n_local && m.atom_of[g] < nlocal; g++)
        std::memcpy(&dst[static_cast<size_t>(m.atom_of[g]) * dim], &v[static_cast<size_t>(g) * dim],
                    dim * sizeof(double));
    }
  }
}

/* ----------------------------------------------------------------------
   extract_peratom(name): node head `name` of the last energy step, per local atom (ncol 0: one
   value per atom, a double *; ncol = dim > 1: a double ** of dim columns); nullptr for other
   names.
------------------------------------------------------------------------- */

void *PairHydraGNN::extract_peratom(const char *name, int &ncol)
{
  Impl &m = *impl;
  if (m.devi_every > 0 && strcmp(name, "model_devi_f") == 0) {
    // this rank's atoms' force deviation of the last deviation step (zeros before the first)
    if (static_cast<int>(m.devi_atom.size()) < atom->nmax) m.devi_atom.resize(atom->nmax, 0.0);
    ncol = 0;
    return static_cast<void *>(m.devi_atom.data());
  }
  for (size_t h = 0; h < m.node_names.size(); h++) {
    if (m.node_names[h] != name) continue;
    if (static_cast<int>(m.node_values[h].size()) < atom->nmax * m.node_dims[h]) {
      // not computed yet (or the atom arrays grew): zeros of the right size
      m.node_nmax = std::max(m.node_nmax, atom->nmax);
      m.node_values[h].assign(static_cast<size_t>(m.node_nmax) * m.node_dims[h], 0.0);
      m.node_rows[h].resize(m.node_nmax);
      for (int i = 0; i < m.node_nmax; i++) m.node_rows[h][i] = &m.node_values[h][static_cast<size_t>(i) * m.node_dims[h]];
    }
    ncol = m.node_dims[h] > 1 ? m.node_dims[h] : 0;
    return ncol ? static_cast<void *>(m.node_rows[h].data()) : static_cast<void *>(m.node_values[h].data());
  }
  ncol = 0;
  return nullptr;
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
  bytes += (m.graph.positions.capacity() + m.forces.capacity() + m.energies.capacity() +
            m.virials.capacity()) * sizeof(double);
  bytes += (m.graph.centers.capacity() + m.graph.neighbors.capacity()) * sizeof(int64_t);
  bytes += (m.row_of.capacity() + m.atom_of.capacity() + m.graph.numbers.capacity()) * sizeof(int);
  // an ensemble's per-member results and the per-atom force deviation
  for (size_t k = 0; k < m.mforces.size(); k++)
    bytes += (m.mforces[k].capacity() + m.menergies[k].capacity() + m.mvirials[k].capacity()) * sizeof(double);
  bytes += m.devi_atom.capacity() * sizeof(double);
  return bytes;
}
