# Source this file (`. scripts/env.sh`) to build or run by hand: puts the project's .venv first on
# PATH (python for tch's build script, mpicc/mpirun, lmp) and target/release after it (the
# `hydragnn` binary, once built), and sets the variables the build reads.
_HGNN_ROOT="$(cd "$(dirname "${BASH_SOURCE[0]:-$0}")/.." && pwd)"
export HYDRAGNN_ROOT="$_HGNN_ROOT"
export VIRTUAL_ENV="$_HGNN_ROOT/.venv"
case ":$PATH:" in *":$VIRTUAL_ENV/bin:"*) ;; *) export PATH="$VIRTUAL_ENV/bin:$PATH" ;; esac
case ":$PATH:" in *":$_HGNN_ROOT/target/release:"*) ;; *) export PATH="$PATH:$_HGNN_ROOT/target/release" ;; esac
export LIBTORCH_USE_PYTORCH=1
_HGNN_SITE="$(ls -d "$VIRTUAL_ENV"/lib/python3*/site-packages 2>/dev/null | head -n1)"
export LIBCLANG_PATH="$_HGNN_SITE/clang/native"
export HYDRAGNN_SITE_PACKAGES="$_HGNN_SITE"
export OMP_NUM_THREADS="${OMP_NUM_THREADS:-1}"
unset _HGNN_ROOT _HGNN_SITE
