"""The geometry of periodicity, in one place: the tolerance, the box faces, the maps.

Every periodic cell is the box ``[0, L_0] x [0, L_1] (x [0, L_2])``. A point lies on a
face when its coordinate is within :func:`tolerance` of the face; opposite faces carry
matching nodes (a translation by ``L_i``). The gmsh generators, the ``.msh`` loader and
its check, the facet tags, the pore space of the Stokes cell and the periodic
constraints of every cell problem all use the tolerance and maps below.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

__all__ = [
    "PERIODICITY_TOLERANCE",
    "tolerance",
    "on_face",
    "periodic_maps",
]

#: Relative tolerance of every periodicity test: a point is on the face ``x_i = L_i`` when
#: ``|x_i - L_i| <= PERIODICITY_TOLERANCE * max(L)``. gmsh places periodic nodes exactly
#: (to ~1e-15); the value leaves room for a user mesh written with 8-9 digits, and is far
#: below any element size.
PERIODICITY_TOLERANCE = 1e-8


def tolerance(lengths: Sequence[float]) -> float:
    """The absolute matching tolerance of the box with side lengths ``lengths``."""
    return PERIODICITY_TOLERANCE * float(np.max(np.asarray(lengths, dtype=np.float64)))


def on_face(x: np.ndarray, axis: int, value: float, atol: float) -> np.ndarray:
    """Indicator of the points ``x`` (shape ``(3, n)``) on the plane ``x_axis = value``."""
    return np.abs(x[axis] - value) <= atol


def periodic_maps(lengths: Sequence[float]):
    """The maps of periodicity on the box ``[0, L_0] x ...``, for dolfinx_mpc.

    Returns:
        ``(tol, on_upper_face, image, interior)``: the absolute matching tolerance; the
        indicator of points on a face ``x_i = L_i`` (the slaves); the map of such a point to
        its image with every coordinate on an upper face shifted by ``-L_i`` (so edges and
        corners map to the origin corner); the indicator of points strictly inside the box.
    """
    dim = len(lengths)
    L = np.asarray(lengths, dtype=np.float64)
    tol = tolerance(L)

    def on_upper_face(x):
        return np.any(np.abs(x[:dim].T - L) <= tol, axis=1)

    def image(x):
        out = x.copy()
        for i in range(dim):
            out[i] = np.where(np.abs(x[i] - L[i]) <= tol, x[i] - L[i], x[i])
        return out

    def interior(x):
        return np.all((x[:dim].T > tol) & (x[:dim].T < L - tol), axis=1)

    return tol, on_upper_face, image, interior
