"""Import-only stand-in for torch_scatter, for making the goldens without the 10-60 min sdist build.

Upstream HydraGNN (d251f81) imports torch_scatter at module level (hydragnn/models/Base.py,
create.py, MACEStack.py, ...), but for the models in tests/hydragnn_golden_extra on CPU no
torch_scatter function runs: HydraGNN calls torch_scatter.scatter_add only in
EnhancedModelWrapper.energy_force_loss (training) and in MACE, and torch_geometric 2.8.0 calls it
only for CUDA min/max scatters, scatter_argmax, segment_csr and the ptr path of softmax, none of
which these models take on CPU. Every function here raises, so a golden run that finishes proves
that none was called. It is importable, so torch_geometric.typing.WITH_TORCH_SCATTER is True,
exactly as with the real package, and PyG takes the same code paths.
"""

__version__ = "0+import-stub"


def _never(name):
    def f(*args, **kwargs):
        raise RuntimeError(f"torch_scatter import stub: {name} was called; build the real "
                           "torch_scatter 2.1.2 (see tests/hydragnn_golden_extra/README.md)")
    f.__name__ = name
    return f


for _n in ["scatter", "scatter_add", "scatter_sum", "scatter_mean", "scatter_max", "scatter_min",
           "scatter_mul", "scatter_std", "scatter_logsumexp", "scatter_softmax",
           "scatter_log_softmax", "segment_csr", "segment_coo", "gather_csr", "gather_coo",
           "segment_sum_csr", "segment_add_csr", "segment_mean_csr", "segment_min_csr",
           "segment_max_csr", "segment_sum_coo", "segment_add_coo", "segment_mean_coo",
           "segment_min_coo", "segment_max_coo"]:
    globals()[_n] = _never(_n)
del _n
