"""Voigt notation: the one place where the package fixes its convention for elasticity.

Convention (used by every elastic quantity in ``hmm_fem``):

* **Order.** 3D: ``xx, yy, zz, yz, xz, xy`` (indices ``0..5``); 2D: ``xx, yy, xy``
  (indices ``0..2``). ``voigt_size(3) == 6``, ``voigt_size(2) == 3``.
* **Strains** are written with *engineering* shears: the Voigt strain vector is
  ``(e_xx, e_yy, e_zz, 2 e_yz, 2 e_xz, 2 e_xy)`` (``gamma_ij = 2 e_ij``).
* **Stresses** are written without factors: ``(s_xx, s_yy, s_zz, s_yz, s_xz, s_xy)``.
* **Stiffness.** A Voigt stiffness matrix ``C`` maps the Voigt strain to the Voigt
  stress, ``sigma_v = C @ eps_v``, so the strain energy density is
  ``eps_v @ C @ eps_v / 2`` and ``C`` is symmetric. The shear diagonal of an
  isotropic ``C`` is the shear modulus ``mu`` (not ``2 mu``).
* **2D is plane strain** unless stated otherwise: the 3x3 matrix is the ``xx, yy, xy``
  block of the 3D stiffness (``e_zz = e_xz = e_yz = 0``).
* **Mandel** notation (an orthonormal basis; needed for eigenvalues and norms that
  mean something) scales every shear component by ``sqrt(2)`` for both strain and
  stress: ``C_mandel = W C_voigt W`` with ``W = diag(1, 1, 1, sqrt2, sqrt2, sqrt2)``.

Moduli are in the units of the given Young's moduli; the functions do not assume any.
All functions work on numpy arrays and broadcast over leading axes where natural.
"""

from __future__ import annotations

import numpy as np

__all__ = [
    "ufl_strain",
    "ufl_stress_tensor",
    "VOIGT_PAIRS",
    "voigt_size",
    "voigt_dim",
    "strain_to_voigt",
    "voigt_to_strain",
    "stress_to_voigt",
    "voigt_to_stress",
    "unit_strains",
    "lame",
    "isotropic_stiffness",
    "voigt_to_mandel",
    "mandel_to_voigt",
    "stiffness_to_tensor",
    "tensor_to_stiffness",
]

#: Tensor index pair ``(i, j)`` of every Voigt component, per dimension.
VOIGT_PAIRS: dict[int, tuple[tuple[int, int], ...]] = {
    2: ((0, 0), (1, 1), (0, 1)),
    3: ((0, 0), (1, 1), (2, 2), (1, 2), (0, 2), (0, 1)),
}


def voigt_size(dim: int) -> int:
    """Number of Voigt components in dimension ``dim``: 3 in 2D, 6 in 3D.

    Raises:
        ValueError: If ``dim`` is not 2 or 3.
    """
    if dim not in VOIGT_PAIRS:
        raise ValueError(f"dim={dim!r} must be 2 or 3")
    return len(VOIGT_PAIRS[dim])


def voigt_dim(size: int) -> int:
    """Dimension belonging to a Voigt vector of ``size`` components (3 -> 2, 6 -> 3).

    Raises:
        ValueError: If ``size`` is neither 3 nor 6.
    """
    for dim, pairs in VOIGT_PAIRS.items():
        if len(pairs) == size:
            return dim
    raise ValueError(f"a Voigt vector has 3 (2D) or 6 (3D) components, not {size}")


def _shear_mask(dim: int) -> np.ndarray:
    """``True`` on the shear (off-diagonal) Voigt components."""
    return np.array([i != j for i, j in VOIGT_PAIRS[dim]])


def _tensor_dim(tensor: np.ndarray) -> int:
    if tensor.ndim < 2 or tensor.shape[-1] != tensor.shape[-2] or tensor.shape[-1] not in (2, 3):
        raise ValueError(
            f"expected symmetric 2x2 or 3x3 tensors (shape (..., d, d)), got shape {tensor.shape}"
        )
    return tensor.shape[-1]


def _to_voigt(tensor, shear_factor: float) -> np.ndarray:
    tensor = np.asarray(tensor, dtype=np.float64)
    dim = _tensor_dim(tensor)
    rows, cols = np.array(VOIGT_PAIRS[dim]).T
    # The symmetric part: an unsymmetric input is symmetrised, not silently half-read.
    sym = 0.5 * (tensor[..., rows, cols] + tensor[..., cols, rows])
    return np.where(_shear_mask(dim), shear_factor * sym, sym)


def _from_voigt(vector, shear_factor: float) -> np.ndarray:
    vector = np.asarray(vector, dtype=np.float64)
    dim = voigt_dim(vector.shape[-1])
    values = np.where(_shear_mask(dim), vector / shear_factor, vector)
    out = np.zeros(vector.shape[:-1] + (dim, dim))
    for k, (i, j) in enumerate(VOIGT_PAIRS[dim]):
        out[..., i, j] = values[..., k]
        out[..., j, i] = values[..., k]
    return out


def strain_to_voigt(eps) -> np.ndarray:
    """Symmetric strain tensor(s) ``(..., d, d)`` to Voigt vectors ``(..., n)``.

    Shears are engineering shears: ``v = (e_xx, e_yy, e_zz, 2 e_yz, 2 e_xz, 2 e_xy)`` in
    3D and ``(e_xx, e_yy, 2 e_xy)`` in 2D. The symmetric part of ``eps`` is used.
    """
    return _to_voigt(eps, 2.0)


def voigt_to_strain(v) -> np.ndarray:
    """Voigt strain vector(s) ``(..., n)`` (engineering shears) to tensors ``(..., d, d)``.

    The inverse of :func:`strain_to_voigt`: ``e_ij = gamma_ij / 2`` off the diagonal.
    """
    return _from_voigt(v, 2.0)


def stress_to_voigt(sigma) -> np.ndarray:
    """Symmetric stress tensor(s) ``(..., d, d)`` to Voigt vectors ``(..., n)``.

    No factors: ``(s_xx, s_yy, s_zz, s_yz, s_xz, s_xy)`` in 3D, ``(s_xx, s_yy, s_xy)`` in
    2D. The symmetric part of ``sigma`` is used.
    """
    return _to_voigt(sigma, 1.0)


def voigt_to_stress(v) -> np.ndarray:
    """Voigt stress vector(s) ``(..., n)`` to symmetric tensors ``(..., d, d)``."""
    return _from_voigt(v, 1.0)


def unit_strains(dim: int) -> np.ndarray:
    """The Voigt basis as symmetric strain tensors, shape ``(n, d, d)``.

    Entry ``k`` is the strain whose Voigt vector is the unit vector ``e_k``; for a
    shear component it has ``1/2`` in both off-diagonal positions (engineering shear
    ``gamma = 1``). These are the macro strains of the ``n`` cell load cases, and
    column ``k`` of a Voigt stiffness is the stress answering strain ``k``.
    """
    return voigt_to_strain(np.eye(voigt_size(dim)))


def lame(E, nu) -> tuple[np.ndarray | float, np.ndarray | float]:
    """Lame constants ``(lambda, mu)`` of Young's modulus ``E`` and Poisson ratio ``nu``.

    ``lambda = E nu / ((1 + nu)(1 - 2 nu))``, ``mu = E / (2 (1 + nu))`` (3D / plane
    strain values; in the units of ``E``). Broadcasts over arrays.

    Raises:
        ValueError: If ``E <= 0`` or ``nu`` is not in ``(-1, 1/2)`` (or not finite).
    """
    E_arr, nu_arr = np.asarray(E, dtype=np.float64), np.asarray(nu, dtype=np.float64)
    if not (np.all(np.isfinite(E_arr)) and np.all(np.isfinite(nu_arr))):
        raise ValueError(f"Young's modulus {E!r} and Poisson ratio {nu!r} must be finite")
    if np.any(E_arr <= 0.0):
        raise ValueError(f"Young's modulus must be positive, got E={E!r}")
    if np.any(nu_arr <= -1.0) or np.any(nu_arr >= 0.5):
        raise ValueError(
            f"Poisson ratio must be in (-1, 0.5) for a positive definite isotropic stiffness, "
            f"got nu={nu!r}"
        )
    lam = E_arr * nu_arr / ((1.0 + nu_arr) * (1.0 - 2.0 * nu_arr))
    mu = E_arr / (2.0 * (1.0 + nu_arr))
    if lam.ndim == 0:
        return float(lam), float(mu)
    return lam, mu


def isotropic_stiffness(E, nu, dim: int = 3, plane: str = "strain") -> np.ndarray:
    """Voigt stiffness of an isotropic material, shape ``(n, n)`` (``(..., n, n)`` for arrays).

    ``C = lambda m m^T + mu diag(2, 2, 2, 1, 1, 1)`` in 3D with ``m = (1, 1, 1, 0, 0, 0)``
    (engineering shears: the shear diagonal is ``mu``). In 2D, ``plane="strain"`` (the
    default, the package's 2D model) gives the ``xx, yy, xy`` block of the 3D matrix,
    ``[[lambda + 2 mu, lambda, 0], [lambda, lambda + 2 mu, 0], [0, 0, mu]]``;
    ``plane="stress"`` gives ``E / (1 - nu^2) [[1, nu, 0], [nu, 1, 0], [0, 0, (1 - nu)/2]]``.

    Args:
        E: Young's modulus (positive).
        nu: Poisson ratio in ``(-1, 1/2)``.
        dim: 2 or 3.
        plane: ``"strain"`` or ``"stress"``; only used in 2D.

    Raises:
        ValueError: For invalid moduli, dimension or ``plane``.
    """
    voigt_size(dim)  # validates dim
    if plane not in ("strain", "stress"):
        raise ValueError(f"plane={plane!r} must be 'strain' or 'stress'")
    lam, mu = lame(E, nu)
    lam, mu = np.asarray(lam), np.asarray(mu)
    if dim == 2 and plane == "stress":
        # Plane stress: lambda is replaced by 2 lambda mu / (lambda + 2 mu).
        lam = 2.0 * lam * mu / (lam + 2.0 * mu)
    normal = ~_shear_mask(dim)
    m = normal.astype(np.float64)
    C = lam[..., None, None] * np.outer(m, m)
    C = C + mu[..., None, None] * np.diag(np.where(normal, 2.0, 1.0))
    return C


def _mandel_weights(size: int) -> np.ndarray:
    dim = voigt_dim(size)
    return np.where(_shear_mask(dim), np.sqrt(2.0), 1.0)


def _check_stiffness_shape(C: np.ndarray) -> int:
    if C.ndim < 2 or C.shape[-1] != C.shape[-2]:
        raise ValueError(f"expected square Voigt matrices (shape (..., n, n)), got {C.shape}")
    return C.shape[-1]


def voigt_to_mandel(C) -> np.ndarray:
    """Voigt stiffness ``(..., n, n)`` to Mandel (orthonormal basis): ``W C W``.

    ``W = diag(1, 1, 1, sqrt2, sqrt2, sqrt2)`` (``diag(1, 1, sqrt2)`` in 2D). Eigenvalues
    of the Mandel matrix are the eigenvalues of the stiffness as a map on symmetric
    tensors; those of the Voigt matrix are not.
    """
    C = np.asarray(C, dtype=np.float64)
    w = _mandel_weights(_check_stiffness_shape(C))
    return C * w[:, None] * w[None, :]


def mandel_to_voigt(C) -> np.ndarray:
    """Mandel stiffness ``(..., n, n)`` to Voigt: ``W^-1 C W^-1`` (inverse of the above)."""
    C = np.asarray(C, dtype=np.float64)
    w = _mandel_weights(_check_stiffness_shape(C))
    return C / (w[:, None] * w[None, :])


def stiffness_to_tensor(C) -> np.ndarray:
    """Voigt stiffness ``(..., n, n)`` to the fourth-order tensor ``(..., d, d, d, d)``.

    ``C_ijkl = C_voigt[I, K]`` with ``I = (i, j)``, ``K = (k, l)`` (minor symmetries
    filled in); because the Voigt strain carries engineering shears, no factors appear.
    """
    C = np.asarray(C, dtype=np.float64)
    dim = voigt_dim(_check_stiffness_shape(C))
    out = np.zeros(C.shape[:-2] + (dim,) * 4)
    pairs = VOIGT_PAIRS[dim]
    for a, (i, j) in enumerate(pairs):
        for b, (k, m) in enumerate(pairs):
            for p, q in {(i, j), (j, i)}:
                for r, s in {(k, m), (m, k)}:
                    out[..., p, q, r, s] = C[..., a, b]
    return out


def tensor_to_stiffness(C4) -> np.ndarray:
    """Fourth-order stiffness ``(..., d, d, d, d)`` to the Voigt matrix ``(..., n, n)``.

    Reads ``C_voigt[I, K] = C_ijkl``; the inverse of :func:`stiffness_to_tensor` for
    tensors with the minor symmetries. Useful to rotate or permute axes:
    ``tensor_to_stiffness(einsum("ai,bj,ck,dl,ijkl->abcd", R, R, R, R, stiffness_to_tensor(C)))``.
    """
    C4 = np.asarray(C4, dtype=np.float64)
    if C4.ndim < 4 or len(set(C4.shape[-4:])) != 1 or C4.shape[-1] not in (2, 3):
        raise ValueError(f"expected tensors of shape (..., d, d, d, d), got {C4.shape}")
    dim = C4.shape[-1]
    rows, cols = np.array(VOIGT_PAIRS[dim]).T
    return C4[..., rows[:, None], cols[:, None], rows[None, :], cols[None, :]]


def ufl_strain(u):
    """The small strain of the displacement ``u`` as a UFL Voigt vector (engineering shears).

    2D: ``(e_xx, e_yy, 2 e_xy)``; 3D: ``(e_xx, e_yy, e_zz, 2 e_yz, 2 e_xz, 2 e_xy)``.
    """
    import ufl

    g = ufl.grad(u)
    return ufl.as_vector(
        [g[i, j] if i == j else g[i, j] + g[j, i] for i, j in VOIGT_PAIRS[g.ufl_shape[0]]]
    )


def ufl_stress_tensor(s, dim: int):
    """The symmetric ``dim x dim`` UFL tensor of a Voigt stress vector ``s`` (no factors)."""
    import ufl

    index = {}
    for k, (i, j) in enumerate(VOIGT_PAIRS[dim]):
        index[i, j] = index[j, i] = k
    return ufl.as_matrix([[s[index[i, j]] for j in range(dim)] for i in range(dim)])
