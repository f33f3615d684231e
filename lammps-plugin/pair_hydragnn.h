/** pair_style hydragnn: a hydragnn-rs message-passing potential evaluated through the engine's C
 *  ABI (libhydragnn.so) with spatial decomposition: node features of ghost atoms are exchanged
 *  after every layer (forward comm) and their gradients after every backward layer (reverse comm),
 *  so the ghost shell is one cutoff wide whatever the number of layers.
 *
 *  This header includes only pair.h; the engine and its header appear only in the .cpp. */

#ifndef LMP_PAIR_HYDRAGNN_H
#define LMP_PAIR_HYDRAGNN_H

#include "pair.h"

#include <exception>
#include <string>

namespace LAMMPS_NS {

class PairHydraGNN : public Pair {
 public:
  PairHydraGNN(class LAMMPS *);
  ~PairHydraGNN() override;

  void compute(int, int) override;
  void settings(int, char **) override;
  void coeff(int, char **) override;
  void init_style() override;
  double init_one(int, int) override;

  int pack_forward_comm(int, int *, double *, int, int *) override;
  void unpack_forward_comm(int, int, double *) override;
  int pack_reverse_comm(int, int, double *) override;
  void unpack_reverse_comm(int, int *, double *) override;

  double memory_usage() override;
  void *extract(const char *, int &) override;
  void *extract_peratom(const char *, int &) override;

 private:
  struct Impl;    // the engine handles, options and per-step buffers (pair_hydragnn.cpp)
  Impl *impl;

  double **scale = nullptr;    // per type pair, for fix adapt (extract "scale"); must be uniform

  void allocate();
  void load_model();
  double uniform_scale();
  [[noreturn]] void fail_one(const std::exception &e);

  // the phases of compute()
  void build_graph();
  void warn_close_pair();
  void begin_evaluation();
  void forward_pass();
  void readout();
  void reduce_energy();
  void backward_pass();
  void member_results(int k, bool want_virial);
  void tally_results(double factor, int K);
  void model_deviation(double factor);
  void other_heads(bool graph, bool node);
  void describe_heads();
  void set_graph_attr(const std::string &file);
};

}    // namespace LAMMPS_NS

#endif
