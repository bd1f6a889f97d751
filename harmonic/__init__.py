"""harmonic: distances, HarMax and heads for harmonic-loss models (Baek et al. 2025; Miller-Golub et al. 2026).

Submodules runs, emissions, metrics, toy, vision, llm and kernels are imported on use (`from harmonic import runs`).
"""

from harmonic.distances import distance_names, is_matmul_type, pairwise
from harmonic.harmax import harmax_log_probs, harmonic_loss
from harmonic.heads import HarmonicHead, head_from_spec, head_label, resolve_head_spec
from harmonic.regularizers import distance_regularizer, embedding_penalty, regularized_loss

__all__ = [
    "HarmonicHead",
    "distance_names",
    "distance_regularizer",
    "embedding_penalty",
    "harmax_log_probs",
    "harmonic_loss",
    "head_from_spec",
    "head_label",
    "is_matmul_type",
    "pairwise",
    "regularized_loss",
    "resolve_head_spec",
]
