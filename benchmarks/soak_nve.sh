#!/usr/bin/env bash
# Soak test (a benchmark, not a CI test): a long NVE run of 500 fcc Cu atoms (5x5x5 cells) in
# LAMMPS with pair_style hydragnn on the fast path (compress yes), one rank. Every 1,000 steps it
# records the step, the total energy per atom and the resident memory (RSS) of the lmp processes,
# then prints a table, the energy drift per atom per ps (least-squares slope of E_tot/atom against
# time) and the RSS growth from the first to the last sample.
#
#   benchmarks/soak_nve.sh                          # 20,000 steps of 1 fs, 600 K start (~300 K)
#   SOAK_STEPS=2000 benchmarks/soak_nve.sh          # a short smoke run
#
# Environment: SOAK_STEPS (20000), SOAK_EVERY (1000), SOAK_MODEL (potentials/metals_schnet.model),
# SOAK_T (initial temperature, K, default 600: equipartition brings it to ~300 K),
# SOAK_THREADS (libtorch/engine threads, default 1), SOAK_OUT (runs/soak_nve).
# Outputs in SOAK_OUT: in.soak, log.lammps, soak.csv (step,time_ps,etotal_per_atom,temp,rss_kib).
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
. scripts/env.sh

STEPS="${SOAK_STEPS:-20000}"
EVERY="${SOAK_EVERY:-1000}"
MODEL="$(realpath "${SOAK_MODEL:-potentials/metals_schnet.model}")"
T0="${SOAK_T:-600}"
OUT="${SOAK_OUT:-runs/soak_nve}"
PLUGIN="$ROOT/target/lammps-plugin/libhydragnn_lammps.so"
[ -f "$PLUGIN" ] || { echo "error: $PLUGIN missing: run lammps-plugin/build.sh" >&2; exit 1; }
command -v lmp >/dev/null || { echo "error: lmp not on PATH (scripts/bootstrap.sh installs it)" >&2; exit 1; }
mkdir -p "$OUT"
cd "$OUT"

cat > in.soak <<EOF
# written by benchmarks/soak_nve.sh
plugin load $PLUGIN
units metal
atom_style atomic
lattice fcc 3.615
region box block 0 5 0 5 0 5
create_box 1 box
create_atoms 1 box
mass 1 63.546
pair_style hydragnn compress yes
pair_coeff * * $MODEL Cu
velocity all create $T0 4928459 mom yes rot yes dist gaussian loop geom
fix integrate all nve
timestep 0.001
thermo_style custom step time temp etotal
thermo_modify norm yes format float %.12g
thermo $EVERY
run $STEPS
# keeps the process alive while the last RSS sample is taken
shell sleep 2
EOF

export HYDRAGNN_NUM_THREADS="${SOAK_THREADS:-1}"
rm -f soak.csv log.lammps
echo "step,time_ps,etotal_per_atom,temp,rss_kib" > soak.csv
# VmRSS (KiB) of lmp and its descendants (the venv's `lmp` is a Python launcher whose child is the
# LAMMPS executable): the memory of the whole run.
rss_tree() {
  ps -e -o pid=,ppid=,rss= | awk -v root="$1" '
    { pid[NR] = $1; ppid[NR] = $2; rss[NR] = $3 }
    END {
      keep[root] = 1; changed = 1
      while (changed) { changed = 0
        for (i = 1; i <= NR; i++) if (keep[ppid[i]] && !keep[pid[i]]) { keep[pid[i]] = 1; changed = 1 } }
      for (i = 1; i <= NR; i++) if (keep[pid[i]]) total += rss[i]
      print total + 0 }'
}
start=$(date +%s)
lmp -in in.soak -log log.lammps > lmp.out 2>&1 &
pid=$!
# Sample the RSS of lmp as each thermo line (every $EVERY steps) appears.
while kill -0 "$pid" 2>/dev/null; do
  n_seen=$(($(wc -l < soak.csv) - 1))
  while read -r step time temp etot; do
    rss=$(rss_tree "$pid")
    echo "$step,$time,$etot,$temp,${rss:-NA}" >> soak.csv
  done < <(awk -v every="$EVERY" '$1 ~ /^[0-9]+$/ && NF == 4 && $1 % every == 0 {print}' lmp.out | tail -n +$((n_seen + 1)))
  sleep 0.2
done
wait "$pid" || { echo "error: lmp failed, see $OUT/lmp.out" >&2; tail -20 lmp.out >&2; exit 1; }
wall=$(($(date +%s) - start))
# Lines printed after the last sample (the final thermo line once lmp exited): RSS unknown.
n_seen=$(($(wc -l < soak.csv) - 1))
awk -v every="$EVERY" '$1 ~ /^[0-9]+$/ && NF == 4 && $1 % every == 0 {print}' lmp.out | tail -n +$((n_seen + 1)) |
  while read -r step time temp etot; do echo "$step,$time,$etot,$temp,NA" >> soak.csv; done

python - "$wall" <<'EOF'
import csv, sys
import numpy as np
rows = list(csv.DictReader(open("soak.csv")))
t = np.array([float(r["time_ps"]) for r in rows])
e = np.array([float(r["etotal_per_atom"]) for r in rows])
rss = [r["rss_kib"] for r in rows]
print(f"{'step':>7} {'time/ps':>8} {'T/K':>7} {'E_tot/atom (eV)':>17} {'E-E0 (meV/atom)':>16} {'RSS (MiB)':>10}")
for r, ei in zip(rows, e):
    m = f"{int(r['rss_kib']) / 1024:10.1f}" if r["rss_kib"] != "NA" else f"{'-':>10}"
    print(f"{int(r['step']):>7} {float(r['time_ps']):>8.1f} {float(r['temp']):>7.1f} {ei:>17.9f} {1e3 * (ei - e[0]):>16.4f} {m}")
slope = np.polyfit(t, e, 1)[0] if len(t) > 1 else float("nan")
known = [int(x) for x in rss if x != "NA"]
print(f"energy drift: {slope * 1e3:.4g} meV/atom/ps (least-squares slope over {t[-1] - t[0]:.1f} ps); "
      f"max |E - E0| {1e3 * np.max(np.abs(e - e[0])):.4g} meV/atom")
if len(known) > 1:
    after = known[1:]  # the first sample includes start-up allocations
    print(f"RSS: first {known[0] / 1024:.1f} MiB, last {known[-1] / 1024:.1f} MiB, "
          f"growth after the first sample {(max(after) - after[0]) / 1024:.1f} MiB (max - first of the rest)")
print(f"wall time {sys.argv[1]} s for {int(rows[-1]['step'])} steps")
EOF
