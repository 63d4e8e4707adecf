"""The periodic constraint of a cell problem (dolfinx_mpc) with a pinned interior point.

A cell problem seeks a periodic fluctuation: its degrees of freedom on the faces
``x_i = L_i`` are slaves of the matching ones on ``x_i = 0``, and one interior point is
pinned to remove the constant null space. The geometry of periodicity (tolerance and
maps) is :mod:`hmm_fem.geometry.periodicity`.
"""

from __future__ import annotations

from collections.abc import Sequence

import dolfinx_mpc
import numpy as np
from dolfinx import fem
from petsc4py import PETSc

from ..geometry.periodicity import periodic_maps

__all__ = ["periodic_constraint"]


def _is_mixed(V: fem.FunctionSpace) -> bool:
    """Whether ``V`` is a mixed space (sub-spaces of their own), not a blocked vector space."""
    return V.num_sub_spaces > 0 and V.dofmap.index_map_bs == 1


def periodic_constraint(
    V: fem.FunctionSpace,
    lengths: tuple[float, ...],
    pin: bool = True,
    bcs: Sequence[fem.DirichletBC] = (),
) -> tuple[dolfinx_mpc.MultiPointConstraint, list[fem.DirichletBC]]:
    """Periodic constraint of ``V`` on the box ``[0, L_0] x ...`` and a pinned interior point.

    Every degree of freedom on a face ``x_i = L_i`` is tied to its image with
    ``x_i`` shifted by ``-L_i`` (all shifts at once, so edges and corners map to the
    origin corner). One interior dof is pinned to zero when ``pin``, which
    removes the constants from the kernel without changing any gradient.

    Args:
        V: Scalar, vector or mixed Lagrange space on a periodic mesh (``MPI.COMM_SELF``);
            every sub-space of a mixed space is periodic.
        lengths: Side lengths of the periodic box.
        pin: Pin the fluctuation to zero at one interior node (removes the constants).
            A mixed space is pinned through ``bcs`` instead (e.g. its pressure).
        bcs: Further homogeneous Dirichlet conditions (e.g. no slip on a solid surface).

    Returns:
        The finalised constraint and the list of Dirichlet conditions (``bcs`` and the pin).

    Raises:
        ValueError: if ``pin`` and the mesh has no interior node, or ``V`` is mixed.
    """
    tol, on_upper_face, image, interior_points = periodic_maps(lengths)
    mixed = _is_mixed(V)
    bcs = list(bcs)
    if pin:
        if mixed:
            raise ValueError(
                "periodic_constraint: pin=True needs a scalar or vector space; pin a mixed space "
                "through bcs (e.g. one pressure dof)"
            )
        # Pin an interior dof: a boundary (master) dof would still collect the rows of
        # its periodic slaves and the pin would not hold.
        interior = fem.locate_dofs_geometrical(V, interior_points)
        if len(interior) == 0:
            raise ValueError(
                "the cell mesh has no interior node to pin the corrector; refine the mesh"
            )
        zero = np.zeros(V.dofmap.index_map_bs, dtype=PETSc.ScalarType)
        value = zero if V.dofmap.index_map_bs > 1 else zero[0]
        bcs.append(fem.dirichletbc(value, interior[:1], V))
    mpc = dolfinx_mpc.MultiPointConstraint(V)
    for space in [V.sub(i) for i in range(V.num_sub_spaces)] if mixed else [V]:
        mpc.create_periodic_constraint_geometrical(space, on_upper_face, image, bcs, tol=tol)
    mpc.finalize()
    return mpc, bcs
