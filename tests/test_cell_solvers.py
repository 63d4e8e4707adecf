"""The cell solvers: options kept for the solver's life, documented defaults that are true."""

import re

import pytest
import ufl
from dolfinx import fem
from petsc4py import PETSc

from hmm_fem import cells
from hmm_fem.cells import (
    AxialFlowCell,
    ConductivityCell,
    ElasticityCell,
    HyperelasticCell,
    PermeabilityCell,
)
from hmm_fem.cells.conditions import Kinematic
from hmm_fem.cells.periodic import periodic_constraint
from hmm_fem.cells.solver import FactorisedSolver

MUMPS_LU = {"ksp_type": "preonly", "pc_type": "lu", "pc_factor_mat_solver_type": "mumps"}


def options_under(prefix):
    return sorted(key for key in PETSc.Options().getAll() if key.startswith(prefix))


@pytest.fixture(scope="module")
def square():
    return cells.square(0.3, mesh_size=0.1)


# -- the options live as long as the solver ----------------------------------------------------
@pytest.mark.mpi
@pytest.mark.parametrize("constrained", [True, False])
def test_factorisation_time_option_takes_effect_and_is_removed(square, constrained):
    """``mat_mumps_icntl_7`` is read when MUMPS creates its factor, after setFromOptions:
    it must still be in the database then (it was deleted before, and silently ignored),
    and gone after destroy(). ICNTL(7) = 0 is AMD; INFOG(7) is the ordering MUMPS used."""
    V = fem.functionspace(square.mesh, ("Lagrange", 1))
    if constrained:  # the dolfinx_mpc solver of the periodic cells
        mpc, bcs = periodic_constraint(V, square.lengths)
    else:  # the plain-assembly solver of the kinematic and traction cells
        mpc, bcs = None, Kinematic().constrain(V, lengths=square.lengths).bcs
    u, v = ufl.TrialFunction(V), ufl.TestFunction(V)
    a = fem.form(ufl.inner(ufl.grad(u), ufl.grad(v)) * ufl.dx)
    orderings = {}
    for ordering in (None, 0):
        extra = {} if ordering is None else {"mat_mumps_icntl_7": ordering}
        solver = FactorisedSolver(a, mpc, bcs, "options_test", {**MUMPS_LU, **extra})
        solver.factorise()
        factor = solver.ksp.getPC().getFactorMatrix()
        orderings[ordering] = (factor.getMumpsIcntl(7), factor.getMumpsInfog(7))
        if ordering is not None:
            assert orderings[ordering] == (ordering, ordering)  # AMD requested, AMD used
        prefix = solver.prefix
        assert options_under(prefix)  # alive as long as the solver
        solver.destroy()
        assert options_under(prefix) == []
    assert orderings[None][0] == 7  # the default: MUMPS chooses
    assert orderings[None][1] != 0  # and AMD is not what MUMPS chooses by itself here


@pytest.mark.parametrize("bc", ["periodic", "kinematic", "traction"])
def test_cells_remove_their_options(square, bc):
    phases = {"matrix": (1.0, 0.3), "inclusion": (10.0, 0.2)}
    problem = ElasticityCell(square, phases, bc=bc)
    prefix = problem.solver.prefix
    assert "pc_factor_mat_solver_type" in {k[len(prefix) :] for k in options_under(prefix)}
    problem.effective_tensor()
    problem.destroy()
    assert options_under(prefix) == []


# -- the documented default solvers are the actual ones --------------------------------------------
def _petsc_options_paragraph(cls):
    doc = cls.__doc__
    start = doc.index("petsc_options:")
    end = re.search(r"\n\s{0,8}\w+( \(.*\))?:\s", doc[start + 15 :])
    return " ".join(doc[start : start + 15 + (end.start() if end else len(doc))].split())


@pytest.mark.parametrize(
    "build",
    [
        lambda c: ConductivityCell(c, {"matrix": 1.0, "inclusion": 2.0}),
        lambda c: ElasticityCell(c, {"matrix": (1.0, 0.3), "inclusion": (2.0, 0.3)}),
        lambda c: ElasticityCell(c, {"matrix": (1.0, 0.3), "inclusion": (2.0, 0.3)}, bc="traction"),
        lambda c: HyperelasticCell(c, {"matrix": (1.0, 0.3), "inclusion": (2.0, 0.3)}),
        lambda c: PermeabilityCell(c),
        lambda c: AxialFlowCell(c, degree=1),
    ],
    ids=["conductivity", "elasticity", "elasticity-traction", "hyperelastic", "stokes", "axial"],
)
def test_documented_default_solver_is_the_actual_one(square, build):
    """Each class's ``petsc_options`` documentation names the solver it really uses."""
    problem = build(square)
    pc = problem.solver.ksp.getPC()
    actual = {"cholmod": "CHOLMOD", "mumps": "MUMPS"}[pc.getFactorSolverType()]
    paragraph = _petsc_options_paragraph(type(problem))
    assert actual in paragraph, (actual, paragraph)
    if actual == "CHOLMOD":
        assert pc.getType() == "cholesky" and "LU (MUMPS)" not in paragraph
    problem.destroy()
