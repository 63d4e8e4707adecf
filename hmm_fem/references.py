"""Independent references for effective properties: exact formulas, bounds and published fits.

Tests and demos check computed tensors against these. Each function states its
source. All are plain numpy (no DOLFINx), so they can be used anywhere.

Two-phase notation: ``k_m`` is the matrix (host) conductivity, ``k_i`` the
inclusion conductivity, ``f`` the inclusion volume fraction, ``d`` the dimension.
"""

from __future__ import annotations

import numpy as np

__all__ = [
    "arithmetic_mean",
    "harmonic_mean",
    "laminate_conductivity",
    "maxwell_garnett",
    "hashin_shtrikman_bounds",
    "hashin_shtrikman_trace_margins",
    "perrins_square_array",
    "backus_laminate",
    "hill_equal_shear_bulk",
    "PERRINS_CONTRAST_10",
]


def arithmetic_mean(k_m: float, k_i: float, f: float) -> float:
    """Voigt/Wiener upper bound: ``(1 - f) k_m + f k_i``."""
    return (1.0 - f) * k_m + f * k_i


def harmonic_mean(k_m: float, k_i: float, f: float) -> float:
    """Reuss/Wiener lower bound: ``1 / ((1 - f)/k_m + f/k_i)``."""
    return 1.0 / ((1.0 - f) / k_m + f / k_i)


def laminate_conductivity(k_m: float, k_i: float, f: float, dim: int = 2) -> np.ndarray:
    """Exact K* of a laminate with layers normal to x: ``diag(harmonic, arithmetic, ...)``."""
    return np.diag([harmonic_mean(k_m, k_i, f)] + [arithmetic_mean(k_m, k_i, f)] * (dim - 1))


def maxwell_garnett(k_m: float, k_i: float, f: float, dim: int = 2) -> float:
    """Maxwell Garnett (Clausius-Mossotti) estimate for dilute discs (2D) or spheres (3D).

    ``K*/k_m = (k_i + (d-1) k_m + (d-1) f (k_i - k_m)) / (k_i + (d-1) k_m - f (k_i - k_m))``;
    exact to first order in ``f`` for well-separated inclusions.
    """
    c = dim - 1
    return k_m * (k_i + c * k_m + c * f * (k_i - k_m)) / (k_i + c * k_m - f * (k_i - k_m))


def hashin_shtrikman_bounds(k_m: float, k_i: float, f: float, dim: int = 2) -> tuple[float, float]:
    """Hashin-Shtrikman bounds (lower, upper) on an isotropic two-phase K*.

    Hashin & Shtrikman, J. Appl. Phys. 33 (1962) 3125; in ``d`` dimensions
    ``k_lo + f_hi / (1/(k_hi - k_lo) + f_lo/(d k_lo))`` and symmetrically.
    """
    (k1, f1), (k2, f2) = sorted([(k_m, 1.0 - f), (k_i, f)])
    if k1 == k2:
        return k1, k1
    lower = k1 + f2 / (1.0 / (k2 - k1) + f1 / (dim * k1))
    upper = k2 + f1 / (1.0 / (k1 - k2) + f2 / (dim * k2))
    return lower, upper


def hashin_shtrikman_trace_margins(
    tensor: np.ndarray, k_m: float, k_i: float, f: float
) -> tuple[float, float]:
    """Margins of the Hashin-Shtrikman trace bounds for an anisotropic two-phase K*.

    With ``k1 < k2`` of fractions ``f1, f2`` (Murat-Tartar, Lurie-Cherkaev; Milton,
    *The Theory of Composites*, 2002, section 23.1):

        tr (K* - k1 I)^-1 <= d / (f2 (k2 - k1)) + f1 / (f2 k1)
        tr (k2 I - K*)^-1 <= d / (f1 (k2 - k1)) - f2 / (f1 k2)

    For an isotropic K* they reduce to :func:`hashin_shtrikman_bounds`.

    Returns:
        ``(lower_margin, upper_margin)``: right-hand side minus left-hand side of each
        inequality, relative to the right-hand side. Both are >= 0 when the bounds hold.
    """
    tensor = np.asarray(tensor, dtype=np.float64)
    d = tensor.shape[0]
    (k1, f1), (k2, f2) = sorted([(k_m, 1.0 - f), (k_i, f)])
    eye = np.eye(d)
    rhs_lo = d / (f2 * (k2 - k1)) + f1 / (f2 * k1)
    rhs_hi = d / (f1 * (k2 - k1)) - f2 / (f1 * k2)
    lhs_lo = np.trace(np.linalg.inv(tensor - k1 * eye))
    lhs_hi = np.trace(np.linalg.inv(k2 * eye - tensor))
    return (rhs_lo - lhs_lo) / rhs_lo, (rhs_hi - lhs_hi) / rhs_hi


def perrins_square_array(k_m: float, k_i: float, f: float) -> float:
    """K* of a square array of discs: the fit of Perrins, McKenzie & McPhedran (1979).

    Proc. R. Soc. Lond. A 369, 207-225, eq. (5.2):
    ``K*/k_m = 1 - 2f / (T + f - 0.305827 f^4 T / (T^2 - 1.402958 f^8) - 0.013362 f^8 / T)``
    with ``T = (1 + s)/(1 - s)`` and ``s = k_i/k_m``. Accurate to about 1e-5 relative
    for ``f <= 0.5`` (at f = 0.5, s = inf it gives 3.080177 against 3.080198 exact).
    """
    s = k_i / k_m
    T = (1.0 + s) / (1.0 - s)
    denom = T + f - 0.305827 * f**4 * T / (T**2 - 1.402958 * f**8) - 0.013362 * f**8 / T
    return k_m * (1.0 - 2.0 * f / denom)


def square_lattice_sums(n_max: int) -> dict[int, float]:
    """Lattice sums ``S_n = sum' (p + i q)^-n`` of the unit square lattice, ``n = 4, 8, ...``.

    The sums vanish unless ``4 | n`` (the lattice is invariant under ``z -> i z``). ``S_4``
    is the Eisenstein series of the square lattice, ``Gamma(1/4)^8 / (960 pi^2)``; the
    higher sums follow from the recurrence of the Laurent coefficients of Weierstrass'
    ``wp`` function with ``g_2 = 60 S_4`` and ``g_3 = 0``: with ``c_k = (2k - 1) S_2k``,
    ``c_k = 3 / ((2k + 1)(k - 3)) sum_{m=2}^{k-2} c_m c_{k-m}`` for ``k >= 4``.

    Args:
        n_max: The largest order wanted.

    Returns:
        ``{n: S_n}`` for ``n = 4, 8, ..., <= n_max``.
    """
    from math import gamma, pi

    k_max = n_max // 2
    c = {2: 3.0 * gamma(0.25) ** 8 / (960.0 * pi**2), 3: 0.0}
    for k in range(4, k_max + 1):
        c[k] = 3.0 / ((2 * k + 1) * (k - 3)) * sum(c[m] * c[k - m] for m in range(2, k - 1))
    return {2 * k: c[k] / (2 * k - 1) for k in range(2, k_max + 1) if (2 * k) % 4 == 0}


def rayleigh_square_array(k_m: float, k_i: float, f: float, order: int = 41) -> float:
    """K* of a square array of discs by Rayleigh's multipole method, to any accuracy.

    Perrins, McKenzie & McPhedran (1979), Proc. R. Soc. Lond. A 369, 207: the potential
    near the disc at the origin (radius ``a``, ``f = pi a^2`` in the unit cell) is
    expanded in the odd multipoles ``B_l``, and Rayleigh's identity gives, for odd ``l``,

        T B_l / a^(2l) + sum_{odd m} C(l + m - 1, l) S_(l+m) B_m = delta_l1,

    with ``T = (1 + s)/(1 - s)``, ``s = k_i/k_m``, ``S_2 = pi`` (Rayleigh's value of the
    conditionally convergent sum) and the lattice sums of :func:`square_lattice_sums`.
    Then ``K*/k_m = 1 - 2 pi B_1``. Keeping ``B_1`` alone gives the Maxwell-Garnett-like
    ``1 - 2f/(T + f)``; with ``B_3`` the ``0.305827 f^4`` term of
    :func:`perrins_square_array`. The truncation error falls geometrically with ``order``
    (the largest multipole kept); the default is converged to 1e-14 relative for
    ``f <= 0.7``.

    Args:
        k_m: Matrix conductivity.
        k_i: Disc conductivity (``k_i = k_m`` gives ``k_m``; a large value a near
            perfect conductor).
        f: Disc area fraction, below close packing ``pi/4``.
        order: The largest odd multipole kept.

    Returns:
        ``K*_xx = K*_yy``.
    """
    from math import comb, pi

    if not 0.0 <= f < pi / 4:
        raise ValueError(f"f={f} must lie in [0, pi/4) (discs of a square array cannot overlap)")
    if k_m <= 0 or k_i <= 0:
        raise ValueError(f"conductivities must be positive, got k_m={k_m}, k_i={k_i}")
    if k_i == k_m or f == 0.0:
        return float(k_m)
    s = k_i / k_m
    T = (1.0 + s) / (1.0 - s)
    a2 = f / pi
    ls = list(range(1, order + 1, 2))
    sums = {2: pi, **square_lattice_sums(2 * order)}
    # Solved for x_l = B_l / a^l, row l multiplied by a^l: the diagonal is T and the
    # couplings carry a^(l+m) < 1, so the matrix stays well scaled at any order.
    M = np.zeros((len(ls), len(ls)))
    for r, ell in enumerate(ls):
        M[r, r] = T
        for c, m in enumerate(ls):
            M[r, c] += comb(ell + m - 1, ell) * sums.get(ell + m, 0.0) * a2 ** ((ell + m) / 2)
    rhs = np.zeros(len(ls))
    rhs[0] = a2**0.5
    x = np.linalg.solve(M, rhs)
    B1 = x[0] * a2**0.5
    return float(k_m * (1.0 - 2.0 * pi * B1))


#: Published values of the Perrins et al. fit at contrast k_i/k_m = 10, by volume fraction.
PERRINS_CONTRAST_10 = {0.1: 1.178222, 0.2: 1.391458, 0.3: 1.652036, 0.4: 1.980626, 0.5: 2.415467}


def backus_laminate(E, nu, fractions) -> np.ndarray:
    """Exact effective stiffness of a laminate of isotropic layers normal to ``x3``.

    Backus (1962), J. Geophys. Res. 67, 4427; Postma (1955). With ``<.>`` the volume
    average over the layers (Lame constants ``lambda, mu``)::

        C33 = <1/(lambda + 2 mu)>^-1,            C13 = <lambda/(lambda + 2 mu)> C33,
        C11 = <4 mu (lambda + mu)/(lambda + 2 mu)> + <lambda/(lambda + 2 mu)>^2 C33,
        C44 = <1/mu>^-1,   C66 = <mu>,   C12 = C11 - 2 C66.

    Returns:
        The 6x6 Voigt stiffness (order xx, yy, zz, yz, xz, xy; engineering shears).
    """
    E, nu, c = (np.asarray(a, dtype=np.float64) for a in (E, nu, fractions))
    if not np.isclose(c.sum(), 1.0):
        raise ValueError(f"layer fractions sum to {c.sum()}, not 1")
    lam = E * nu / ((1 + nu) * (1 - 2 * nu))
    mu = E / (2 * (1 + nu))
    avg = lambda a: float(np.dot(c, a))  # noqa: E731
    C33 = 1.0 / avg(1.0 / (lam + 2 * mu))
    ratio = avg(lam / (lam + 2 * mu))
    C13 = ratio * C33
    C11 = avg(4 * mu * (lam + mu) / (lam + 2 * mu)) + ratio**2 * C33
    C44 = 1.0 / avg(1.0 / mu)
    C66 = avg(mu)
    C12 = C11 - 2 * C66
    C = np.zeros((6, 6))
    C[0, 0] = C[1, 1] = C11
    C[2, 2] = C33
    C[0, 1] = C[1, 0] = C12
    C[0, 2] = C[2, 0] = C[1, 2] = C[2, 1] = C13
    C[3, 3] = C[4, 4] = C44
    C[5, 5] = C66
    return C


def hill_equal_shear_bulk(bulk_moduli, shear_modulus: float, fractions, dim: int = 3) -> float:
    """Hill's exact effective bulk modulus when all phases share one shear modulus ``G``.

    Hill (1963), J. Mech. Phys. Solids 11, 357: for any geometry,
    ``1/(K* + 4G/3) = sum_i c_i/(K_i + 4G/3)`` in 3D; in 2D plane strain the analogue is
    ``1/(k* + G) = sum_i c_i/(k_i + G)`` with the plane-strain bulk modulus
    ``k = lambda + G``.
    """
    K = np.asarray(bulk_moduli, dtype=np.float64)
    c = np.asarray(fractions, dtype=np.float64)
    shift = 4.0 * shear_modulus / 3.0 if dim == 3 else shear_modulus
    return float(1.0 / np.dot(c, 1.0 / (K + shift)) - shift)
