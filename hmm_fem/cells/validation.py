"""Checks of phase properties shared by the cell problems."""

from __future__ import annotations

import numpy as np

__all__ = ["require_spd"]


def require_spd(matrix: np.ndarray, what: str, hint: str) -> np.ndarray:
    """Return ``matrix`` if it is finite, symmetric and positive definite.

    Args:
        matrix: A square array.
        what: What it is, for the message (``"conductivity of phase 'matrix' (tag 1)"``).
        hint: Why it must be positive definite, appended to the message.

    Raises:
        ValueError: naming ``what`` and the offending values.
    """
    if not np.all(np.isfinite(matrix)):
        raise ValueError(f"{what} is not finite: {matrix.tolist()}")
    if not np.allclose(matrix, matrix.T, rtol=1e-12, atol=0.0):
        raise ValueError(f"{what} is not symmetric: {matrix.tolist()}")
    smallest = np.linalg.eigvalsh(matrix).min()
    if smallest <= 0.0:
        raise ValueError(
            f"{what} must be positive definite; got {matrix.tolist()} with smallest "
            f"eigenvalue {smallest:.6g}. {hint}"
        )
    return matrix
