/* test_capi.c: exercises libhydragnn.so through include/hydragnn.h only, as a C client would.
 * Usage: test_capi MODEL CORRUPT_FILE. Exit code 0 when every check passes. */
#include "hydragnn.h"
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static int failures = 0;
#define CHECK(cond, ...) do { if (!(cond)) { failures++; printf("FAIL %s:%d: ", __FILE__, __LINE__); printf(__VA_ARGS__); printf("\n"); } } while (0)

/* expect status `code` and a last-error message containing `needle` */
static void expect_error(hgnn_status_t got, hgnn_status_t code, const char *needle, const char *what) {
    const char *msg = hgnn_last_error();
    CHECK(got == code, "%s: status %d, expected %d (%s)", what, got, code, msg);
    CHECK(strstr(msg, needle) != NULL, "%s: message '%s' does not mention '%s'", what, msg, needle);
}

int main(int argc, char **argv) {
    if (argc < 3) { fprintf(stderr, "usage: test_capi MODEL CORRUPT_FILE\n"); return 2; }
    CHECK(hgnn_abi_version() == HGNN_ABI_VERSION, "ABI version %d, header %d", hgnn_abi_version(), HGNN_ABI_VERSION);
    hgnn_model_t *model = NULL;
    hgnn_options_t opts = hgnn_options_default();
    opts.num_threads = 1;
    hgnn_status_t s = hgnn_model_load(argv[1], &opts, &model);
    if (s != HGNN_SUCCESS) { printf("cannot load %s: %s\n", argv[1], hgnn_last_error()); return 1; }

    double rc; int32_t nl, ns, z[8], w0;
    CHECK(hgnn_model_cutoff(model, &rc) == 0 && fabs(rc - 4.0) < 1e-12, "cutoff %g", rc);
    CHECK(hgnn_model_num_layers(model, &nl) == 0 && nl == 3, "layers %d", nl);
    CHECK(hgnn_model_num_species(model, &ns) == 0 && ns == 3, "species %d", ns);
    CHECK(hgnn_model_species(model, z, 8) == 0 && z[0] == 29 && z[1] == 28 && z[2] == 8, "species list");
    CHECK(hgnn_model_feature_width(model, 0, &w0) == 0 && w0 > 0, "width");
    const char *sym = NULL, *units = NULL, *bname = NULL, *desc = NULL;
    int32_t dt = 0, nb = 0, ab = -1;
    CHECK(hgnn_model_species_symbol(model, 0, &sym) == 0 && strcmp(sym, "Cu") == 0, "symbol 0 %s", sym);
    CHECK(hgnn_model_species_symbol(model, 2, &sym) == 0 && strcmp(sym, "O") == 0, "symbol 2 %s", sym);
    expect_error(hgnn_model_species_symbol(model, 3, &sym), HGNN_ERROR_INVALID_ARGUMENT, "outside 0..3", "symbol index");
    CHECK(hgnn_model_lammps_units(model, &units) == 0 && strcmp(units, "metal") == 0, "units %s", units);
    CHECK(hgnn_model_precision(model, &dt) == 0 && dt == HGNN_DTYPE_FLOAT64, "precision %d", dt);
    CHECK(hgnn_model_num_branches(model, &nb) == 0 && nb >= 1, "branches %d", nb);
    CHECK(hgnn_model_branch_name(model, 0, &bname) == 0 && strlen(bname) > 0, "branch name");
    expect_error(hgnn_model_branch_name(model, nb, &bname), HGNN_ERROR_INVALID_ARGUMENT, "branch index", "branch index");
    CHECK(hgnn_model_active_branch(model, &ab) == 0 && ab == 0, "active branch %d", ab);
    CHECK(hgnn_model_path_description(model, &desc) == 0 && strstr(desc, "fast") != NULL, "description %s", desc);
    int32_t pd = 0;
    CHECK(hgnn_precision_parse("fp32", &pd) == 0 && pd == HGNN_DTYPE_FLOAT32, "parse fp32");
    CHECK(hgnn_precision_parse("Double", &pd) == 0 && pd == HGNN_DTYPE_FLOAT64, "parse Double");
    expect_error(hgnn_precision_parse("bf16", &pd), HGNN_ERROR_INVALID_ARGUMENT, "evaluation are float32 or float64", "bf16");
    expect_error(hgnn_precision_parse("half", &pd), HGNN_ERROR_INVALID_ARGUMENT, "must be float32 or float64", "half");
    expect_error(hgnn_precision_parse(NULL, &pd), HGNN_ERROR_NULL_POINTER, "name", "NULL precision name");
    CHECK(strcmp(hgnn_precision_name(HGNN_DTYPE_FLOAT32), "float32") == 0, "name 32");
    CHECK(strcmp(hgnn_precision_name(HGNN_DTYPE_FLOAT64), "float64") == 0, "name 64");
    CHECK(hgnn_precision_name(16) == NULL, "name 16");
    const char *info = NULL;
    CHECK(hgnn_model_info(model, &info) == 0 && strstr(info, "\"metal\"") != NULL, "info %s", info);

    /* a periodic 4-atom cell, rattled */
    double a = 3.61;
    double pos[12] = {0.02, 0, 0, a / 2, a / 2 + 0.05, 0, a / 2, 0, a / 2 - 0.03, 0, a / 2, a / 2};
    int32_t numbers[4] = {29, 28, 29, 8};
    hgnn_structure_t st = {4, pos, numbers, {a, 0, 0, 0, a, 0, 0, 0, a}, {1, 1, 1}};
    double f[12], w[9], e[4], vir[36];
    hgnn_results_t r = {0, f, w, e, vir};
    s = hgnn_compute(model, &st, &r);
    CHECK(s == 0, "compute: %s", hgnn_last_error());
    double esum = e[0] + e[1] + e[2] + e[3];
    CHECK(fabs(esum - r.energy) < 1e-10 * fabs(r.energy), "per-atom energies sum %g vs %g", esum, r.energy);

    /* batch of two identical structures gives the same numbers twice */
    hgnn_structure_t two[2] = {st, st};
    double f2[2][12];
    hgnn_results_t r2[2] = {{0, f2[0], NULL, NULL, NULL}, {0, f2[1], NULL, NULL, NULL}};
    CHECK(hgnn_compute_batch(model, 2, two, r2) == 0, "batch: %s", hgnn_last_error());
    CHECK(fabs(r2[1].energy - r.energy) < 1e-12 * fabs(r.energy) && fabs(f2[1][4] - f[4]) < 1e-12, "batch differs");

    /* energy only: NULL outputs are skipped */
    hgnn_results_t only = {0, NULL, NULL, NULL, NULL};
    CHECK(hgnn_compute(model, &st, &only) == 0 && fabs(only.energy - r.energy) < 1e-12 * fabs(r.energy), "energy only");

    /* heads: this model's branch has the energy head alone */
    int32_t nh = 0, hi = -1;
    hgnn_head_t head;
    CHECK(hgnn_model_num_heads(model, &nh) == 0 && nh == 1, "heads %d", nh);
    CHECK(hgnn_model_head(model, 0, &head) == 0 && strcmp(head.name, "energy") == 0 && head.kind == HGNN_HEAD_GRAPH &&
          head.dim == 1 && head.pooling == HGNN_POOL_SUM, "energy head");
    CHECK(hgnn_model_head_index(model, "energy", &hi) == 0 && hi == 0, "head index %d", hi);
    double hv[2];
    CHECK(hgnn_compute_head(model, 2, two, "energy", hv, 2) == 0 && fabs(hv[1] - r.energy) < 1e-12 * fabs(r.energy),
          "energy head: %s", hgnn_last_error());
    expect_error(hgnn_compute_head(model, 1, &st, "gap", hv, 1), HGNN_ERROR_INVALID_ARGUMENT, "no head named 'gap'",
                 "unknown head");
    expect_error(hgnn_compute_head(model, 2, two, "energy", hv, 1), HGNN_ERROR_INVALID_ARGUMENT,
                 "holds 1 values but 2 are needed", "head buffer size");

    /* ---- bad inputs: each a code and a message naming it ---- */
    double bad[12];
    memcpy(bad, pos, sizeof bad);
    bad[7] = NAN;
    hgnn_structure_t nan_st = st; nan_st.positions = bad;
    expect_error(hgnn_compute(model, &nan_st, &r), HGNN_ERROR_INVALID_ARGUMENT, "atom 2", "NaN position");
    int32_t unknown[4] = {29, 28, 79, 8};
    hgnn_structure_t unk = st; unk.atomic_numbers = unknown;
    expect_error(hgnn_compute(model, &unk, &r), HGNN_ERROR_UNKNOWN_SPECIES, "Au", "unknown species");
    hgnn_structure_t flat = st; flat.cell[8] = 0.0;
    expect_error(hgnn_compute(model, &flat, &r), HGNN_ERROR_INVALID_ARGUMENT, "zero", "zero-volume cell");
    hgnn_structure_t nullpos = st; nullpos.positions = NULL;
    expect_error(hgnn_compute(model, &nullpos, &r), HGNN_ERROR_NULL_POINTER, "positions", "NULL positions");
    expect_error(hgnn_compute(NULL, &st, &r), HGNN_ERROR_NULL_POINTER, "model", "NULL model");
    expect_error(hgnn_compute(model, NULL, &r), HGNN_ERROR_NULL_POINTER, "structures", "NULL structure");
    hgnn_model_t *m2 = NULL;
    expect_error(hgnn_model_load("/nonexistent/dir/x.model", NULL, &m2), HGNN_ERROR_IO, "x.model", "missing file");
    CHECK(m2 == NULL, "model pointer set on failure");
    expect_error(hgnn_model_load(argv[2], NULL, &m2), HGNN_ERROR_MODEL_FILE, "corrupted", "corrupt file");
    expect_error(hgnn_model_load(NULL, NULL, &m2), HGNN_ERROR_NULL_POINTER, "path", "NULL path");
    opts.dtype = 16;
    expect_error(hgnn_model_load(argv[1], &opts, &m2), HGNN_ERROR_INVALID_ARGUMENT, "dtype", "bad dtype");
    opts.dtype = HGNN_DTYPE_FLOAT64; opts.branch = "nope";
    expect_error(hgnn_model_load(argv[1], &opts, &m2), HGNN_ERROR_INVALID_ARGUMENT, "nope", "unknown branch");
    expect_error(hgnn_set_num_threads(0), HGNN_ERROR_INVALID_ARGUMENT, "threads", "zero threads");

    /* ---- a caller-supplied graph: an isolated dimer, one-pass and layer by layer ---- */
    double gp[6] = {0, 0, 0, 2.3, 0.4, -0.2};
    int32_t gz[2] = {29, 8};
    int64_t centers[2] = {0, 1}, neighbors[2] = {1, 0};
    hgnn_graph_t g = {2, 2, gp, gz, 2, centers, neighbors, NULL};
    double gf[6], gw[9];
    hgnn_results_t gr = {0, gf, gw, NULL, NULL};
    CHECK(hgnn_compute_graph(model, &g, &gr) == 0, "graph: %s", hgnn_last_error());
    hgnn_structure_t dimer = {2, gp, gz, {0}, {0, 0, 0}};
    double df[6];
    hgnn_results_t dr = {0, df, NULL, NULL, NULL};
    CHECK(hgnn_compute(model, &dimer, &dr) == 0, "dimer: %s", hgnn_last_error());
    CHECK(fabs(dr.energy - gr.energy) < 1e-12 * fabs(dr.energy), "graph vs structure %.15g %.15g", gr.energy, dr.energy);

    hgnn_eval_t *ev = NULL;
    CHECK(hgnn_eval_begin(model, &g, &ev) == 0, "eval_begin: %s", hgnn_last_error());
    for (int l = 0; l < nl; l++) CHECK(hgnn_eval_forward_layer(ev, l) == 0, "forward %d: %s", l, hgnn_last_error());
    double le;
    CHECK(hgnn_eval_readout(ev, &le) == 0, "readout");
    for (int l = nl - 1; l >= 0; l--) CHECK(hgnn_eval_backward_layer(ev, l) == 0, "backward %d", l);
    double lf[6];
    hgnn_results_t lr = {0, lf, NULL, NULL, NULL};
    CHECK(hgnn_eval_results(ev, &lr) == 0, "results: %s", hgnn_last_error());
    CHECK(fabs(lr.energy - gr.energy) < 1e-12 * fabs(gr.energy), "layered energy");
    for (int k = 0; k < 6; k++) CHECK(fabs(lf[k] - gf[k]) < 1e-10 * (fabs(gf[k]) + 1e-3), "layered force %d", k);
    expect_error(hgnn_eval_forward_layer(ev, 0), HGNN_ERROR_INVALID_ARGUMENT, "out of order", "forward after results");
    hgnn_eval_free(ev);
    int64_t badn[2] = {1, 5};
    hgnn_graph_t bg = g; bg.neighbors = badn;
    expect_error(hgnn_compute_graph(model, &bg, &gr), HGNN_ERROR_INVALID_ARGUMENT, "edge 1", "edge index out of range");

    /* ---- evaluation paths: the fast path by default for SchNet, the exact one on request ---- */
    const char *path = NULL;
    CHECK(hgnn_model_path(model, &path) == 0 && strstr(path, "\"path\":\"fast\"") != NULL, "default path %s", path);
    CHECK(strstr(path, "table_rel_error") != NULL, "fast path states its table error: %s", path);
    double fe = r.energy, ff4 = f[4];
    CHECK(hgnn_model_set_compress(model, 0, 0.0) == 0, "compress off: %s", hgnn_last_error());
    CHECK(hgnn_model_path(model, &path) == 0 && strstr(path, "\"path\":\"exact\"") != NULL, "exact path %s", path);
    CHECK(hgnn_compute(model, &st, &r) == 0, "exact compute: %s", hgnn_last_error());
    /* a random model (~300 eV/atom): the paths agree to the tables' relative error */
    CHECK(fabs(r.energy - fe) < 1e-7 * fabs(fe) && fabs(f[4] - ff4) < 1e-5 * (fabs(ff4) + 1.0),
          "fast %.12g vs exact %.12g, force %.12g vs %.12g", fe, r.energy, ff4, f[4]);
    CHECK(fe != r.energy, "the two paths are different code (energies equal to the last bit)");
    expect_error(hgnn_model_set_compress(model, 1, 0.5), HGNN_ERROR_INVALID_ARGUMENT, "tolerance", "bad tolerance");
    expect_error(hgnn_model_set_compress(NULL, 1, 0.0), HGNN_ERROR_NULL_POINTER, "model", "NULL model (compress)");
    CHECK(hgnn_model_set_compress(model, 1, 1e-10) == 0, "compress on: %s", hgnn_last_error());
    CHECK(hgnn_model_path(model, &path) == 0 && strstr(path, "\"path\":\"fast\"") != NULL, "fast path again %s", path);

    /* an evaluation shares its model: the path cannot change under it, and the model may be
       freed first (the evaluation keeps it alive) */
    hgnn_eval_t *ev2 = NULL;
    CHECK(hgnn_eval_begin(model, &g, &ev2) == 0, "eval_begin (2): %s", hgnn_last_error());
    expect_error(hgnn_model_set_compress(model, 0, 0.0), HGNN_ERROR_INVALID_ARGUMENT, "in progress", "compress during an evaluation");
    hgnn_model_free(model);
    hgnn_model_free(NULL);
    for (int l = 0; l < nl; l++) CHECK(hgnn_eval_forward_layer(ev2, l) == 0, "forward %d after model_free: %s", l, hgnn_last_error());
    CHECK(hgnn_eval_readout(ev2, &le) == 0, "readout after model_free");
    CHECK(fabs(le - gr.energy) < 1e-7 * fabs(gr.energy), "energy after model_free %.12g %.12g", le, gr.energy);
    hgnn_eval_free(ev2);
    printf("%s: %d failure(s)\n", argv[0], failures);
    return failures == 0 ? 0 : 1;
}
