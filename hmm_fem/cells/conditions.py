"""Boundary conditions of cell problems, as objects.

A cell problem seeks a fluctuation ``w`` of the macro field on the cell ``Y``. How ``w``
is constrained on the cell boundary decides the estimate of the effective tensor:

* :class:`Periodic`: ``w`` periodic (dolfinx_mpc), one interior node pinned;
* :class:`Kinematic`: ``w = 0`` on the whole boundary (the affine, uniform-strain estimate);
* :class:`Traction`: the *minimal kinematic* condition ``int_dY w (x) n ds = 0`` and
  ``int_Y w dx = 0``, imposed with Lagrange multipliers in real spaces: the weakest
  condition that keeps ``<grad w> = 0``, whose solution carries a uniform traction on the
  boundary (the static estimate); the mean constraint removes the rigid translations.

On one mesh the estimates are ordered: traction <= periodic <= kinematic.

A condition is a declaration (it keeps no state); :meth:`CellCondition.system` builds,
for a space and the bilinear and linear forms of a cell problem, a :class:`CellSystem`
that owns everything the condition decides: the constrained space, the matrix and its
factorised solver, the load vector and how to assemble it, the vector to solve into, the
back-substitution into a solution function, the load entries the energy formula must
zero, and the default solver options. Cell problems take ``bc="periodic"`` (a name of
:data:`BOUNDARY_CONDITIONS`) or a condition object (:func:`as_condition`).
"""

from __future__ import annotations

import abc
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import basix.ufl
import dolfinx.fem.petsc
import dolfinx_mpc
import numpy as np
import ufl
from dolfinx import fem
from dolfinx import mesh as dmesh
from petsc4py import PETSc

from .periodic import periodic_constraint
from .solver import DEFAULT_SOLVER_OPTIONS, LU_SOLVER_OPTIONS, FactorisedSolver, assemble_form

__all__ = [
    "BOUNDARY_CONDITIONS",
    "CellCondition",
    "Constraint",
    "CellSystem",
    "Kinematic",
    "Periodic",
    "Traction",
    "as_condition",
]

#: A bilinear form as a function of the trial and test functions: ``a(u, v)`` (UFL).
Bilinear = Callable[[object, object], ufl.Form]
#: A linear form as a function of the test function: ``L(v)`` (UFL).
Linear = Callable[[object], ufl.Form]


@dataclass
class Constraint:
    """A constrained space: what :meth:`CellCondition.constrain` returns.

    Attributes:
        space: The space of the solution functions (``mpc.function_space`` when periodic).
        mpc: The finalised multi-point constraint, or ``None``.
        bcs: The homogeneous Dirichlet conditions.
    """

    space: fem.FunctionSpace
    mpc: object = None
    bcs: list = field(default_factory=list)


class CellSystem:
    """The linear system of a cell problem under one boundary condition.

    Built by :meth:`CellCondition.system`; the cell problem never needs to know which
    condition it is.

    Attributes:
        condition: The condition that built the system.
        space: The space of the solution functions (``mpc.function_space`` when periodic).
        a: The compiled bilinear form (a block form for :class:`Traction`).
        L: The compiled linear form of the loads.
        solver: The :class:`~hmm_fem.cells.solver.FactorisedSolver` of ``a``.
        load: The load vector (filled by :meth:`assemble_load`).
        mpc: The multi-point constraint, or ``None``.
        bcs: The Dirichlet conditions (homogeneous).
        zeroed_entries: The entries of a load vector that the energy formula
            ``b_i . x_j`` must ignore (the periodic slaves).
    """

    def __init__(self, condition, space, a, L, solver, load, mpc=None, bcs=(), zeroed=()):
        self.condition = condition
        self.space = space
        self.a = a
        self.L = L
        self.solver = solver
        self.load = load
        self.mpc = mpc
        self.bcs = list(bcs)
        self.zeroed_entries = np.asarray(zeroed, dtype=np.int64)

    def assemble_vector(self, form: fem.Form, b: PETSc.Vec) -> PETSc.Vec:
        """Assemble the linear form ``form`` into ``b`` with the constraints of the system."""
        return assemble_form(form, b, self.mpc, self.bcs)

    def assemble_load(self, b: PETSc.Vec | None = None) -> PETSc.Vec:
        """Assemble the loads ``L`` at the current coefficients into ``b`` (or :attr:`load`)."""
        return self.assemble_vector(self.L, self.load if b is None else b)

    def target(self, solution: fem.Function) -> PETSc.Vec:
        """The vector a solve writes into, for the solution function ``solution``."""
        return solution.x.petsc_vec

    def back_substitute(self, x: PETSc.Vec, solution: fem.Function) -> None:
        """Complete ``solution`` from the solved vector ``x`` (= :meth:`target`)."""
        solution.x.scatter_forward()

    def destroy(self) -> None:
        """Free the PETSc objects of the system (the solver's options too)."""
        self.solver.destroy()
        self.load.destroy()


class CellCondition(abc.ABC):
    """A boundary condition of a cell problem (a declaration; see the module docstring).

    Attributes:
        name: The name of the condition (``"periodic"``, ...), used in messages.
        default_solver_options: Linear solver options used when a cell gets none.
    """

    name: str = ""
    default_solver_options: dict = DEFAULT_SOLVER_OPTIONS

    @abc.abstractmethod
    def constrain(
        self, V: fem.FunctionSpace, *, lengths: Sequence[float], bcs: Sequence = ()
    ) -> Constraint:
        """Constrain the space ``V`` of the fluctuation.

        Args:
            V: The space of the fluctuation.
            lengths: Side lengths of the periodic box.
            bcs: Further homogeneous Dirichlet conditions on ``V``.
        """

    @abc.abstractmethod
    def system(
        self,
        V: fem.FunctionSpace,
        bilinear: Bilinear,
        linear: Linear,
        *,
        lengths: Sequence[float],
        name: str,
        petsc_options: dict | None = None,
        bcs: Sequence[fem.DirichletBC] = (),
        constraint: Constraint | None = None,
    ) -> CellSystem:
        """Build the constrained linear system of a cell problem.

        Args:
            V: The space of the fluctuation.
            bilinear: ``a(u, v)``, the bilinear form (UFL) in trial and test functions.
            linear: ``L(v)``, the loads (UFL) in the test function.
            lengths: Side lengths of the periodic box.
            name: Short name for the solver's options prefix and messages.
            petsc_options: Linear solver options; default :attr:`default_solver_options`.
            bcs: Further homogeneous Dirichlet conditions on ``V``.
            constraint: The result of :meth:`constrain` if the caller needed the
                constrained space first (e.g. for a coefficient of the forms); default
                ``constrain(V, lengths=lengths, bcs=bcs)``.
        """

    def _options(self, petsc_options: dict | None) -> dict:
        return dict(self.default_solver_options if petsc_options is None else petsc_options)

    def __repr__(self) -> str:
        return f"{type(self).__name__}()"


class Periodic(CellCondition):
    """Periodic fluctuation (dolfinx_mpc), with one interior node pinned.

    Args:
        pin: Pin the fluctuation at one interior node (removes the constants). A mixed
            space (Stokes) is pinned through the ``bcs`` of :meth:`system` instead.
    """

    name = "periodic"

    def __init__(self, pin: bool = True):
        self.pin = bool(pin)

    def constrain(self, V, *, lengths, bcs=()):
        """Periodic constraint (and the pin); see :meth:`CellCondition.constrain`."""
        mpc, bcs = periodic_constraint(V, tuple(lengths), pin=self.pin, bcs=bcs)
        return Constraint(mpc.function_space, mpc, bcs)

    def system(
        self, V, bilinear, linear, *, lengths, name, petsc_options=None, bcs=(), constraint=None
    ):
        """The reduced (master dofs) system of dolfinx_mpc; see :meth:`CellCondition.system`."""
        constraint = constraint or self.constrain(V, lengths=lengths, bcs=bcs)
        mpc, bcs = constraint.mpc, constraint.bcs
        u, v = ufl.TrialFunction(V), ufl.TestFunction(V)
        a, L = fem.form(bilinear(u, v)), fem.form(linear(v))
        solver = FactorisedSolver(a, mpc, bcs, name, self._options(petsc_options))
        load = dolfinx_mpc.assemble_vector(L, mpc)
        return _PeriodicSystem(
            self, mpc.function_space, a, L, solver, load, mpc, bcs, np.asarray(mpc.slaves)
        )

    def __repr__(self) -> str:
        return f"Periodic(pin={self.pin})"


class _PeriodicSystem(CellSystem):
    def back_substitute(self, x, solution):
        solution.x.scatter_forward()
        self.mpc.backsubstitution(solution)


class Kinematic(CellCondition):
    """Zero fluctuation on the whole cell boundary (the affine, uniform-gradient estimate)."""

    name = "kinematic"

    def constrain(self, V, *, lengths, bcs=()):
        """``w = 0`` on the exterior facets; see :meth:`CellCondition.constrain`."""
        msh = V.mesh
        tdim = msh.topology.dim
        msh.topology.create_connectivity(tdim - 1, tdim)
        facets = dmesh.exterior_facet_indices(msh.topology)
        boundary = fem.locate_dofs_topological(V, tdim - 1, facets)
        bs = V.dofmap.index_map_bs
        zero = np.zeros(bs, dtype=PETSc.ScalarType) if bs > 1 else PETSc.ScalarType(0.0)
        return Constraint(V, None, [*bcs, fem.dirichletbc(zero, boundary, V)])

    def system(
        self, V, bilinear, linear, *, lengths, name, petsc_options=None, bcs=(), constraint=None
    ):
        """A plain DOLFINx system, ``w = 0`` on the boundary; see :meth:`CellCondition.system`."""
        bcs = (constraint or self.constrain(V, lengths=lengths, bcs=bcs)).bcs
        u, v = ufl.TrialFunction(V), ufl.TestFunction(V)
        a, L = fem.form(bilinear(u, v)), fem.form(linear(v))
        solver = FactorisedSolver(a, None, bcs, name, self._options(petsc_options))
        return CellSystem(self, V, a, L, solver, dolfinx.fem.petsc.create_vector(V), None, bcs)


class Traction(CellCondition):
    """The minimal kinematic condition (uniform traction), with Lagrange multipliers.

    ``int_dY w (x) n ds = 0`` (``w n`` for a scalar ``w``) keeps the mean gradient of the
    fluctuation zero, and ``int_Y w dx = 0`` removes the translations; both are imposed
    with multipliers in real spaces. The matrix is symmetric indefinite (a saddle point):
    the default solver is MUMPS LU (:data:`~hmm_fem.cells.solver.LU_SOLVER_OPTIONS`).
    """

    name = "traction"
    default_solver_options = LU_SOLVER_OPTIONS

    def constrain(self, V, *, lengths, bcs=()):
        """No constraint of the space (the multipliers enter the forms); see the base class."""
        return Constraint(V, None, list(bcs))

    def system(
        self, V, bilinear, linear, *, lengths, name, petsc_options=None, bcs=(), constraint=None
    ):
        """The block system of fluctuation and multipliers; see :meth:`CellCondition.system`."""
        bcs = (constraint or self.constrain(V, lengths=lengths, bcs=bcs)).bcs
        msh = V.mesh
        d = msh.topology.dim
        shape = tuple(V.value_shape)
        dtype = msh.geometry.x.dtype

        def real(value_shape):
            element = basix.ufl.real_element(msh.basix_cell(), value_shape=value_shape, dtype=dtype)
            return fem.functionspace(msh, element)

        R_n, R_m = real((*shape, d)), real(shape)
        W = ufl.MixedFunctionSpace(V, R_n, R_m)
        u, lam, tau = ufl.TrialFunctions(W)
        v, mu, eta = ufl.TestFunctions(W)
        normal = ufl.FacetNormal(msh)

        def jump(w):
            return ufl.outer(w, normal) if shape else w * normal

        a = (
            bilinear(u, v)
            + ufl.inner(lam, jump(v)) * ufl.ds
            + ufl.inner(mu, jump(u)) * ufl.ds
            + ufl.inner(tau, v) * ufl.dx
            + ufl.inner(eta, u) * ufl.dx
        )
        L = linear(v) + ufl.ZeroBaseForm((mu,)) + ufl.ZeroBaseForm((eta,))
        a_blocks, L_blocks = fem.form(ufl.extract_blocks(a)), fem.form(ufl.extract_blocks(L))
        solver = FactorisedSolver(a_blocks, None, list(bcs), name, self._options(petsc_options))
        load = dolfinx.fem.petsc.create_vector([V, R_n, R_m])
        return _TractionSystem(
            self, V, a_blocks, L_blocks, solver, load, None, bcs, multiplier_spaces=[R_n, R_m]
        )


class _TractionSystem(CellSystem):
    def __init__(self, *args, multiplier_spaces):
        super().__init__(*args)
        #: The multipliers of the last solve: the traction moment and the mean force.
        self.multipliers = [fem.Function(space) for space in multiplier_spaces]
        self._x = self.load.duplicate()

    def target(self, solution):
        return self._x

    def back_substitute(self, x, solution):
        dolfinx.fem.petsc.assign(x, [solution, *self.multipliers])

    def destroy(self):
        super().destroy()
        self._x.destroy()


#: The names of the conditions, weakest to strongest (softest to stiffest estimate).
BOUNDARY_CONDITIONS = ("traction", "periodic", "kinematic")

_BY_NAME = {"periodic": Periodic, "kinematic": Kinematic, "traction": Traction}


def as_condition(bc: str | CellCondition) -> CellCondition:
    """The condition object of ``bc``: a name of :data:`BOUNDARY_CONDITIONS` or an object.

    Raises:
        ValueError: for an unknown name or another type.
    """
    if isinstance(bc, CellCondition):
        return bc
    if isinstance(bc, str) and bc in _BY_NAME:
        return _BY_NAME[bc]()
    raise ValueError(
        f"unknown boundary condition bc={bc!r}; use one of {', '.join(BOUNDARY_CONDITIONS)} "
        "or a hmm_fem.cells.conditions.CellCondition (Periodic(), Kinematic(), Traction())"
    )
