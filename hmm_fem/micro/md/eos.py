"""The Lennard-Jones equation of state of Johnson, Zollweg and Gubbins (1993).

J. K. Johnson, J. A. Zollweg, K. E. Gubbins, "The Lennard-Jones equation of state
revisited", Mol. Phys. 78 (1993) 591–618, doi:10.1080/00268979300100411: a modified
Benedict–Webb–Rubin form with 32 coefficients ``x1 .. x32`` and ``gamma = 3``, fitted to
simulations of the *full* (untruncated) LJ fluid in reduced units (``eps = sigma = m =
k_B = 1``). Eq. (7) of the paper gives the pressure

    P = rho T + sum_{i=1}^{8} a_i(T) rho^(i+1) + F sum_{i=1}^{6} b_i(T) rho^(2i+1),
    F = exp(-gamma rho^2),

and eq. (5) the residual Helmholtz energy per atom ``A_res/N = sum a_i rho^i / i +
sum b_i G_i`` (Tables 5–7 of the paper give ``a_i``, ``b_i``, ``G_i``). The coefficients
(Table 10 of the paper) were checked against NIST's teqp (``LJ126Johnson1993``) and an
independent Julia port; the tests check published values of the fit (its critical
point, ``T_c = 1.313``, ``rho_c = 0.310``; ``B2(0.8)`` and ``A_res/(NkT)`` at
``(1.35, 0.6)`` as computed by S. Stephan) and the thermodynamic consistency of ``P``
and ``A_res``. The paper quotes the fit's pressures as good to a few per cent of ``P``
(more near the critical point); :func:`jzg_pressure` is a reference, not a truth.

An MD pressure with a truncated potential is compared with it after adding the
long-range (tail) correction (LAMMPS ``pair_modify tail yes``).
"""

from __future__ import annotations

import numpy as np

__all__ = ["JZG_X", "JZG_GAMMA", "jzg_pressure", "jzg_helmholtz_residual"]

#: x1 .. x32 of Johnson, Zollweg, Gubbins (1993), Table 10 (index 0 unused).
JZG_X = np.array(
    [
        0.0,
        0.8623085097507421,
        2.976218765822098,
        -8.402230115796038,
        0.1054136629203555,
        -0.8564583828174598,
        1.582759470107601,
        0.7639421948305453,
        1.753173414312048,
        2.798291772190376e03,
        -4.8394220260857657e-02,
        0.9963265197721935,
        -3.698000291272493e01,
        2.084012299434647e01,
        8.305402124717285e01,
        -9.574799715203068e02,
        -1.477746229234994e02,
        6.398607852471505e01,
        1.603993673294834e01,
        6.805916615864377e01,
        -2.791293578795945e03,
        -6.245128304568454,
        -8.116836104958410e03,
        1.488735559561229e01,
        -1.059346754655084e04,
        -1.131607632802822e02,
        -8.867771540418822e03,
        -3.986982844450543e01,
        -4.689270299917261e03,
        2.593535277438717e02,
        -2.694523589434903e03,
        -7.218487631550215e02,
        1.721802063863269e02,
    ]
)

#: The nonlinear parameter gamma of the fit.
JZG_GAMMA = 3.0


def _a(T):
    x = JZG_X
    sT = np.sqrt(T)
    return [
        x[1] * T + x[2] * sT + x[3] + x[4] / T + x[5] / T**2,
        x[6] * T + x[7] + x[8] / T + x[9] / T**2,
        x[10] * T + x[11] + x[12] / T,
        x[13] + 0.0 * T,
        x[14] / T + x[15] / T**2,
        x[16] / T,
        x[17] / T + x[18] / T**2,
        x[19] / T**2,
    ]


def _b(T):
    x = JZG_X
    return [
        x[20] / T**2 + x[21] / T**3,
        x[22] / T**2 + x[23] / T**4,
        x[24] / T**2 + x[25] / T**3,
        x[26] / T**2 + x[27] / T**4,
        x[28] / T**2 + x[29] / T**3,
        x[30] / T**2 + x[31] / T**3 + x[32] / T**4,
    ]


def _check(T, rho):
    T = np.asarray(T, dtype=np.float64)
    rho = np.asarray(rho, dtype=np.float64)
    if np.any(~np.isfinite(T)) or np.any(T <= 0):
        raise ValueError(f"the reduced temperature must be positive, got {T}")
    if np.any(~np.isfinite(rho)) or np.any(rho < 0):
        raise ValueError(f"the reduced density must be >= 0, got {rho}")
    return T, rho


def jzg_pressure(T, rho):
    """The reduced pressure ``P* = P sigma^3 / eps`` of the full LJ fluid (JZG eq. 7).

    Args:
        T: Reduced temperature ``k_B T / eps`` (scalar or array).
        rho: Reduced density ``rho sigma^3`` (broadcast with ``T``).

    Raises:
        ValueError: If ``T <= 0`` or ``rho < 0``.
    """
    T, rho = _check(T, rho)
    F = np.exp(-JZG_GAMMA * rho**2)
    P = rho * T
    for i, a in enumerate(_a(T), start=1):
        P = P + a * rho ** (i + 1)
    for i, b in enumerate(_b(T), start=1):
        P = P + F * b * rho ** (2 * i + 1)
    return P


def jzg_helmholtz_residual(T, rho):
    """The residual Helmholtz energy per atom ``A_res / N`` in units of ``eps`` (JZG eq. 5).

    Raises:
        ValueError: If ``T <= 0`` or ``rho < 0``.
    """
    T, rho = _check(T, rho)
    F = np.exp(-JZG_GAMMA * rho**2)
    A = 0.0 * rho * T
    for i, a in enumerate(_a(T), start=1):
        A = A + a * rho**i / i
    G = (1.0 - F) / (2.0 * JZG_GAMMA)
    for i, b in enumerate(_b(T), start=1):
        if i > 1:
            G = -(F * rho ** (2 * (i - 1)) - 2.0 * (i - 1) * G) / (2.0 * JZG_GAMMA)
        A = A + b * G
    return A
