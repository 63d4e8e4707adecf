"""The iterative solvers of the 3D cells against the direct solve of the same cell.

3D P2 cells default to Krylov solvers with algebraic multigrid (elasticity: CG + GAMG with
the rigid body modes; conductivity: CG + GAMG; Stokes: MINRES with a block preconditioner).
Each is checked here against the direct factorisation of the same matrix (the previous
default) at a small size; the agreements stated in the solver options' documentation are
the tolerances (measured values are in the docstrings).
"""

import math

import numpy as np
import pytest
from petsc4py import PETSc

from hmm_fem import cells
from hmm_fem.cells import DEFAULT_SOLVER_OPTIONS
from hmm_fem.cells.elasticity import AMG_RESIDUAL_TOLERANCE, AMG_SOLVER_OPTIONS, rigid_body_modes
from hmm_fem.cells.stokes import (
    STOKES_ITERATIVE_OPTIONS,
    STOKES_SOLVER_OPTIONS,
    _without_zeros,
)

STIFF = {"matrix": (1.0, 0.3), "inclusion": (10.0, 0.2)}


@pytest.fixture(scope="module")
def cube():
    return cells.cubic(0.3, mesh_size=0.4)


def relative(a, b):
    return np.abs(a - b).max() / np.abs(b).max()


def test_elasticity_amg_matches_the_direct_solve_and_warm_starts(cube):
    """C* of the AMG default (rtol 1e-6) within 1e-6 of CHOLMOD; measured 4.3e-8 here
    (7.4e3 dofs) and 4.8e-8 at 3.1e4 dofs. A warm start (new phases, the last solutions
    as initial guesses) needs fewer iterations than the cold solve."""
    amg = cells.ElasticityCell(cube, STIFF, degree=2)
    assert amg.solver.iterative and amg.solver.options.options == AMG_SOLVER_OPTIONS
    direct = cells.ElasticityCell(cube, STIFF, degree=2, petsc_options=DEFAULT_SOLVER_OPTIONS)
    assert not direct.solver.iterative
    assert relative(amg.effective_tensor(), direct.effective_tensor()) < 1e-6
    cold = amg.solver.iterations
    assert len(cold) == 6 and max(cold) < 100
    stiffer = {"matrix": (1.0, 0.3), "inclusion": (12.0, 0.2)}
    C_warm = amg.effective_tensor(stiffer)
    assert sum(amg.solver.iterations) < sum(cold)
    assert relative(C_warm, direct.effective_tensor(stiffer)) < 1e-6
    amg.destroy()
    direct.destroy()


def test_kinematic_elasticity_amg_matches_the_direct_solve(cube):
    """The kinematic (zero fluctuation on the boundary) cell uses the AMG default too;
    measured 3.9e-8 against CHOLMOD."""
    amg = cells.ElasticityCell(cube, STIFF, degree=2, bc="kinematic")
    assert amg.solver.iterative
    direct = cells.ElasticityCell(
        cube, STIFF, degree=2, bc="kinematic", petsc_options=DEFAULT_SOLVER_OPTIONS
    )
    assert relative(amg.effective_tensor(), direct.effective_tensor()) < 1e-6
    amg.destroy()
    direct.destroy()


def test_rigid_body_modes_are_the_kernel_of_the_unconstrained_strain():
    """Translations and rotations have zero strain: the modes span the elastic kernel."""
    import ufl
    from dolfinx import fem

    msh = cells.cubic(0.2, mesh_size=0.5).mesh
    V = fem.functionspace(msh, ("Lagrange", 2, (3,)))
    u, v = ufl.TrialFunction(V), ufl.TestFunction(V)
    eps = ufl.sym
    A = fem.petsc.assemble_matrix(fem.form(ufl.inner(eps(ufl.grad(u)), eps(ufl.grad(v))) * ufl.dx))
    A.assemble()
    modes = rigid_body_modes(V)
    assert len(modes) == 6
    assert np.linalg.matrix_rank(np.column_stack(modes)) == 6
    y = A.createVecLeft()
    for mode in modes:
        x = A.createVecRight()
        x.array[:] = mode
        A.mult(x, y)
        assert y.norm() < 1e-10 * A.norm() * x.norm()


@pytest.mark.mpi
def test_conductivity_amg_matches_the_direct_solve(cube):
    """K* (P2, CG + GAMG to rtol 1e-9) within 1e-9 of CHOLMOD (energy form: second order;
    measured 4.6e-11); each rank solves its own cell (COMM_SELF)."""
    phases = {"matrix": 1.0, "inclusion": 10.0}
    amg = cells.ConductivityCell(cube, phases, degree=2)
    assert amg.solver.iterative
    direct = cells.ConductivityCell(cube, phases, degree=2, petsc_options=DEFAULT_SOLVER_OPTIONS)
    K, K_direct = amg.effective_tensor(), direct.effective_tensor()
    assert relative(K, K_direct) < 1e-9
    # cubic symmetry and the Hashin-Shtrikman bounds of the meshed fraction
    from hmm_fem import references

    lower, upper = references.hashin_shtrikman_bounds(1.0, 10.0, cube.volume_fraction, 3)
    assert lower < K[0, 0] < upper
    amg.destroy()
    direct.destroy()


def test_compact_matrix_keeps_every_product():
    """Dropping the stored exact zeros changes no product, and keeps every diagonal."""
    rng = np.random.default_rng(3)
    n = 50
    dense = np.where(rng.random((n, n)) < 0.2, rng.standard_normal((n, n)), 0.0)
    dense[3, 3] = 0.0  # a zero diagonal stays in the pattern
    full = PETSc.Mat().createAIJ((n, n), nnz=n, comm=PETSc.COMM_SELF)
    for i in range(n):
        full.setValues(i, np.arange(n, dtype=np.int32), dense[i])  # zeros stored too
    full.assemble()
    compact = _without_zeros(full)
    assert compact.getInfo()["nz_used"] == np.count_nonzero(dense) + np.sum(np.diag(dense) == 0)
    x = full.createVecRight()
    x.array[:] = rng.standard_normal(n)
    assert np.allclose(compact * x, dense @ x.array, rtol=0, atol=1e-13)
    indptr, indices, _ = compact.getValuesCSR()
    assert all(i in indices[indptr[i] : indptr[i + 1]] for i in range(n))


@pytest.mark.mpi
def test_stokes_iterative_matches_the_direct_solve():
    """k of the MINRES block-preconditioned default (rtol 1e-4, second-order dissipation
    form) within 1e-6 of MUMPS LU; measured 3.7e-8 here (8.4e3 dofs), 1.6e-7 at 2.5e4. The
    first-order form b_i.x_j of the same solves is 8.6e-6 off here: the bound tells them apart.
    Simple cubic array of spheres (c = 0.216): isotropic, and near Zick & Homsy on this
    coarse mesh."""
    cell = cells.cubic(0.216, mesh_size=0.35)
    iterative = cells.PermeabilityCell(cell)
    assert iterative.iterative and iterative.solver.iterative
    direct = cells.PermeabilityCell(cell, petsc_options=STOKES_SOLVER_OPTIONS)
    assert not direct.iterative
    k, k_direct = iterative.permeability(), direct.permeability()
    assert relative(k, k_direct) < 1e-6
    assert max(iterative.solver.iterations) < 200
    diag = np.diag(k)
    assert np.ptp(diag) < 5e-3 * diag.mean()
    c = 0.216
    a = (3 * c / (4 * math.pi)) ** (1 / 3)
    zick_homsy = 2 * a**2 / (9 * c * 7.442)  # Zick & Homsy (1982), Table 2
    assert abs(diag.mean() / zick_homsy - 1) < 0.1
    iterative.destroy()
    direct.destroy()


def test_permeability_solver_choice_is_checked():
    cell = cells.cubic(0.1, mesh_size=0.5)
    with pytest.raises(ValueError, match="solver='bogus'"):
        cells.PermeabilityCell(cell, solver="bogus")
    with pytest.raises(ValueError, match="petsc_options with solver='direct'"):
        cells.PermeabilityCell(cell, solver="iterative", petsc_options=STOKES_SOLVER_OPTIONS)
    square = cells.square(0.2, mesh_size=0.1)
    direct = cells.PermeabilityCell(square)
    assert not direct.iterative  # 2D keeps MUMPS
    iterative = cells.PermeabilityCell(square, solver="iterative")
    assert iterative.iterative
    # measured 6.5e-9 (the first-order form: 8.1e-7)
    assert relative(iterative.permeability(), direct.permeability()) < 1e-7
    # the iterative options passed explicitly are the iterative path, not a bare field split
    assert cells.PermeabilityCell(square, petsc_options=STOKES_ITERATIVE_OPTIONS).iterative


def test_an_unconverged_iterative_solve_is_an_error_naming_the_direct_solver(cube):
    from hmm_fem.cells import CellSolveError

    explicit = cells.ElasticityCell(cube, STIFF, degree=2, petsc_options=AMG_SOLVER_OPTIONS)
    assert explicit.solver.residual_tolerance == AMG_RESIDUAL_TOLERANCE  # as by default
    explicit.destroy()
    options = {**AMG_SOLVER_OPTIONS, "ksp_max_it": 2}
    problem = cells.ElasticityCell(cube, STIFF, degree=2, petsc_options=options)
    with pytest.raises(CellSolveError, match="DEFAULT_SOLVER_OPTIONS"):
        problem.effective_tensor()
    problem.destroy()
