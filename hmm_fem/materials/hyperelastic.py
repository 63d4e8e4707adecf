"""The compressible Neo-Hookean law, evaluated at one deformation gradient (NumPy).

The reference implementation of the formulas of :mod:`hmm_fem.cells.hyperelastic`,
for tests and for checking cells:

    psi(F) = mu/2 (I1 - d) - mu ln J + lambda/2 (ln J)^2,   I1 = tr(F^T F), J = det F,
    P = mu (F - F^-T) + lambda ln J F^-T,
    A_iJkL = mu d_ik d_JL + (mu - lambda ln J) F^-1_Li F^-1_Jk + lambda F^-1_Ji F^-1_Lk.
"""

from __future__ import annotations

import numpy as np

__all__ = ["neo_hookean"]


def neo_hookean(F: np.ndarray, mu: float, lam: float) -> tuple[float, np.ndarray, np.ndarray]:
    """Energy, first Piola stress and tangent of the Neo-Hookean law at one ``F`` (numpy).

    The reference implementation of the formulas of the module docstring, for tests
    and for checking cells (``d = F.shape[0]``; in 2D the plane strain values).

    Args:
        F: Deformation gradient, ``d x d`` with ``det F > 0``.
        mu: Lame shear modulus.
        lam: Lame first parameter.

    Returns:
        ``(psi, P, A)`` with ``P`` of shape ``(d, d)`` and ``A[i, J, k, L] = dP_iJ/dF_kL``.
    """
    F = np.asarray(F, dtype=np.float64)
    d = F.shape[0]
    J = np.linalg.det(F)
    if not J > 0.0:
        raise ValueError(f"det F = {J:.6g} <= 0 for F = {F.tolist()}")
    Finv = np.linalg.inv(F)
    lnJ = np.log(J)
    psi = 0.5 * mu * (np.sum(F * F) - d) - mu * lnJ + 0.5 * lam * lnJ**2
    P = mu * (F - Finv.T) + lam * lnJ * Finv.T
    eye = np.eye(d)
    A = (
        mu * np.einsum("ik,JL->iJkL", eye, eye)
        + (mu - lam * lnJ) * np.einsum("Li,Jk->iJkL", Finv, Finv)
        + lam * np.einsum("Ji,Lk->iJkL", Finv, Finv)
    )
    return float(psi), P, A
