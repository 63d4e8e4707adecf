"""The small-strain J2 elastoplastic periodic cell: return mapping at the micro quadrature points.

The micro solve of small-strain plasticity FE². The macro input is the Voigt strain
``E`` (engineering shears, :mod:`hmm_fem.voigt`; 2D cells are **plane strain**:
``E = (E_xx, E_yy, 2 E_xy)``), the micro strain is

    eps = E + eps(w),   w periodic (dolfinx_mpc), one interior node pinned,

and every phase is one of

* **elastoplastic**: a :class:`~hmm_fem.materials.J2Plasticity` (von Mises, linear
  isotropic and kinematic hardening; radial return from the committed internal
  variables at every micro quadrature point, vectorised over the points);
* **linear elastic**: ``(E, nu)`` (isotropic; ``sigma = C eps``, no return mapping);
* **a void**: ``None``. The cell problem is then solved on the submesh of the other
  phases (periodic on it, as the Stokes cell does with its pore space), traction free on
  the void's boundary; the void carries zero stress and the averages are still over the
  whole box ``|Y|``.

One macro step is one backward-Euler increment from given committed internal variables
(those of the plastic phases' quadrature points, :meth:`PlasticCell.initial_state`),
which are never modified: :meth:`PlasticCell.respond` returns the updated ones and the
caller commits them (the micro seam's history, :mod:`hmm_fem.micro.protocol`).

**Newton on the fluctuation** (PETSc SNES ``newtonls`` with the ``bt`` line search,
:class:`~hmm_fem.cells.newton.CellNewton`). The stress and the algorithmic tangent are
quadrature functions: before the residual and the Jacobian are assembled at a new
iterate, the ``prepare`` hook evaluates the micro strain at all quadrature points (one
compiled expression), runs the return mapping of every plastic phase on its points and
``sigma = C eps`` on the elastic ones, and writes the stress and (at the plastic points)
the tangent into the quadrature functions. The residual and Jacobian are

    R(w; v) = int_Y sigma : eps(v) dx,   K(dw, v) = int_Y eps(v) : C_alg : eps(dw) dx,

so Newton converges quadratically once the set of yielding points settles.

**The macro response** (``<.> = 1/|Y| int_Y . dx``, the void contributing zero): the
average stress ``Sigma = <sigma>`` and the consistent macro tangent::

    dSigma/dE_ij |Y| = int_Y e_i . C_alg e_j dx - b_i . x_j,

with ``b_i = -dR/dE[e_i]`` (the load of unit macro strain ``i``) and ``x_j`` the solution
of ``K x_j = b_j`` with the factorisation of the converged Jacobian: the energy form of
the load cases of :mod:`hmm_fem.cells.skeleton`, as in the hyperelastic cell; no finite
differences. All integrals (stress, tangent, forms) use one quadrature rule, of degree
``2 (degree - 1)`` by default: one point per cell for P1, where the strain is constant.

Conventions: Voigt per :mod:`hmm_fem.voigt` (strains with engineering shears, stresses
without factors, order ``xx, yy, zz, yz, xz, xy``; 2D ``xx, yy, xy``); stresses and
tangents in the units of the phase moduli. In plane strain the out-of-plane stress
``sigma_zz`` (not zero) is in :attr:`PlasticCellResponse.stress_3d`, and the internal
variables are full 3D (``eps_p_zz`` is not zero either).
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from dataclasses import dataclass

import basix.ufl
import numpy as np
import ufl
from dolfinx import fem
from dolfinx import mesh as dmesh
from petsc4py import PETSc

from ..geometry import UnitCell
from ..materials.phases import VOIGT_LABELS
from ..materials.plasticity import J2Plasticity
from ..materials.validation import require_named_arrays, require_young_poisson
from ..voigt import VOIGT_PAIRS, isotropic_stiffness, ufl_strain, voigt_size
from .conditions import Periodic, as_condition
from .newton import NewtonFailure, NonlinearCellProblem
from .solver import DEFAULT_SOLVER_OPTIONS, CellSolveError

__all__ = ["PlasticCell", "PlasticCellResponse", "PLASTIC_SOLVER_OPTIONS", "STATE_SHAPES"]

#: The internal variables at one plastic quadrature point (those of
#: :attr:`~hmm_fem.materials.J2Plasticity.STATE_SHAPES`): the cell's state holds them for
#: its ``m`` plastic points, ``(m, *shape)``.
STATE_SHAPES: dict[str, tuple[int, ...]] = dict(J2Plasticity.STATE_SHAPES)

#: The default linear solver of the micro Newton: supernodal CHOLMOD (LL^T, so it fails
#: exactly when the Jacobian is not positive definite; then MUMPS LU takes over and the
#: log says so), without CHOLMOD's own warnings on stderr. The algorithmic tangent is
#: positive definite with hardening and semi-definite without (perfect plasticity), so a
#: cell whose every path crosses yielded, perfectly plastic material can need the
#: fallback.
PLASTIC_SOLVER_OPTIONS: dict[str, str | float | int] = {
    **DEFAULT_SOLVER_OPTIONS,
    "mat_cholmod_factor": "supernodal",
    "mat_cholmod_print": 0,
}


@dataclass(frozen=True)
class PlasticCellResponse:
    """The answer of :meth:`PlasticCell.respond` for one macro strain increment.

    Attributes:
        stress: The average stress ``Sigma`` (Voigt, ``(n,)``: 3 in 2D, 6 in 3D).
        tangent: The consistent macro tangent ``dSigma/dE`` (Voigt, ``(n, n)``: maps an
            engineering macro strain increment to the stress increment).
        state: The updated internal variables of the plastic points (new arrays of
            :attr:`PlasticCell.state_shapes`); the state passed in is untouched.
        stress_3d: The full 3D average stress ``(6,)`` (in plane strain ``stress_3d[2]``
            is ``Sigma_zz``, and the ``yz``, ``xz`` shears are zero).
        yielded: ``(m,)`` bool: the plastic points that yielded in this increment.
        iterations: Newton steps of the micro solve.
    """

    stress: np.ndarray
    tangent: np.ndarray
    state: dict[str, np.ndarray]
    stress_3d: np.ndarray
    yielded: np.ndarray
    iterations: int

    @property
    def stress_zz(self) -> float:
        """The average out-of-plane normal stress ``Sigma_zz``."""
        return float(self.stress_3d[2])


@dataclass
class _Group:
    """Quadrature points sharing one law: indices into all points and into the plastic ones."""

    points: np.ndarray
    rows: np.ndarray | slice
    law: J2Plasticity | None = None
    stiffness: np.ndarray | None = None  # elastic: the Voigt stiffness (n, n)
    zz_row: np.ndarray | None = None  # elastic, plane strain: d sigma_zz / d strain (n,)


def _parse_phase(value, dim: int, what: str):
    """``("void", None)``, ``("plastic", law)`` or ``("elastic", (E, nu))``, or a clear error."""
    if value is None:
        return "void", None
    if isinstance(value, J2Plasticity):
        if value.dim != dim:
            mode = "plane strain" if dim == 2 else "3D"
            raise ValueError(
                f"{what} is {value!r} with dim={value.dim}, but the cell is {dim}D: build the law "
                f"with dim={dim} ({mode}); all J2 laws of a cell have the cell's dimension"
            )
        return "plastic", value
    hint = (
        "give a J2Plasticity (elastoplastic), (E, nu) (linear elastic, isotropic) or None (a void)"
    )
    if isinstance(value, str | bytes | bool):
        raise ValueError(f"{what} is {value!r}; {hint}")
    try:
        array = np.asarray(value, dtype=np.float64)
    except (TypeError, ValueError):
        raise ValueError(f"{what} is {value!r}; {hint}") from None
    if array.shape != (2,):
        raise ValueError(f"{what} is {value!r} (shape {array.shape}); {hint}")
    return "elastic", require_young_poisson(float(array[0]), float(array[1]), what, value)


class PlasticCell(NonlinearCellProblem):
    """Small-strain periodic cell with J2 elastoplastic, linear elastic and void phases.

    See the module docstring for the model, the Newton iteration and the macro tangent.
    The cell is built once (spaces, periodic constraint, compiled forms and expressions,
    the matrix sparsity, the quadrature-point bookkeeping); :meth:`respond` solves one
    increment.

    **The state** (internal variables) lives at the ``m`` quadrature points of the
    plastic phases only (:attr:`num_plastic_points`), in the order of the cells of
    :attr:`mesh` and, within a cell, of the quadrature rule (:meth:`plastic_points`
    gives their coordinates): ``{"plastic_strain": (m, 6), "back_stress": (m, 6),
    "equivalent_plastic_strain": (m,)}`` (:attr:`state_shapes`; full 3D Voigt, as in
    :class:`~hmm_fem.materials.J2Plasticity`), ``13 m`` floats.

    **Newton stopping criterion** (independent of the initial guess, as in the
    hyperelastic cell): ``||R||_2 <= max(rtol ||E||_2, atol) r_ref`` with
    ``r_ref = c_max ||g||_2``, ``c_max`` the largest P-wave modulus ``lambda + 2 mu`` of
    the phases and ``g_a = int (1/h) sum_i (phi_a)_i dx``: the nodal out-of-balance forces
    are below those of a stress ``rtol ||E|| c_max``.

    **Warm start**: the converged fluctuation of the last successful call is the first
    guess of the next (a cold start from ``w = 0`` follows if that fails). After a
    failure the cell is back at its last converged fluctuation and stays usable.

    Example:
        >>> law = J2Plasticity(E=1.0, nu=0.3, yield_stress=0.01, isotropic_hardening=0.1,
        ...                    dim=2)
        >>> problem = PlasticCell(cells.square(0.2), {"matrix": law, "inclusion": (5.0, 0.2)})
        >>> state = problem.initial_state()
        >>> for E_yy in (0.01, 0.02, 0.0):          # load, load, unload
        ...     response = problem.respond([0.0, E_yy, 0.0], state)
        ...     state = response.state              # commit the increment
        >>> response.stress, response.tangent       # Sigma, dSigma/dE (Voigt)

    Args:
        cell: The unit cell (mesh with phase tags).
        phases: By phase name or tag: a :class:`~hmm_fem.materials.J2Plasticity` with
            ``dim == cell.dim`` (elastoplastic), ``(E, nu)`` (linear elastic, isotropic) or
            ``None`` (a void). Not every phase may be a void.
        degree: Polynomial degree of the vector Lagrange fluctuation.
        condition: ``"periodic"`` or :class:`~hmm_fem.cells.conditions.Periodic` (with the
            pin); the only condition of this cell.
        petsc_options: Options under the cell's prefix: ``snes_*`` go to the SNES (over
            :data:`~hmm_fem.cells.newton.NEWTON_OPTIONS`), the others to the linear solver;
            default :data:`PLASTIC_SOLVER_OPTIONS` (CHOLMOD Cholesky, MUMPS LU as the
            recorded fallback).
        rtol: Newton tolerance, relative to the macro strain ``||E||`` (see above).
        atol: Absolute floor of the Newton tolerance, a strain (see above).
        max_iterations: Largest number of Newton steps per start.
        quadrature_degree: Degree of the quadrature rule of every cell integral (the
            points where the law is evaluated); default ``2 (degree - 1)``.

    Attributes:
        mesh: The mesh the problem is solved on: the cell's mesh, or without the voids the
            submesh of the other phases.
        fluctuation: The periodic fluctuation ``w`` of the last solve (on :attr:`mesh`).
        macro_strain: The macro strain ``E`` (Voigt) in the forms.
        state_shapes: Name -> shape of the state (``(m, 6)``, ``(m, 6)``, ``(m,)``).
        num_points: Number of quadrature points of :attr:`mesh`.
        num_plastic_points: ``m``, the quadrature points of the plastic phases.
        newton: The :class:`~hmm_fem.cells.newton.CellNewton` (the SNES and its log).
        iterations: Newton steps of the last solve.
        seconds: Wall time of the last :meth:`respond` (Newton and tangent).
        tangent_seconds: Part of ``seconds`` spent on the tangent (load cases and sums).
        tangent_solver: ``"primary"`` or ``"fallback"`` (MUMPS LU): the solver that
            factorised the converged Jacobian.
        residual_reference: ``r_ref`` of the stopping criterion.

    Raises:
        ValueError: For an unknown or missing phase, a phase value that is none of the
            three kinds, a J2 law of another dimension, only voids, or another condition.
    """

    def __init__(
        self,
        cell: UnitCell,
        phases: Mapping,
        degree: int = 1,
        condition: str | Periodic = "periodic",
        petsc_options: dict | None = None,
        rtol: float = 1e-10,
        atol: float = 1e-13,
        max_iterations: int = 25,
        quadrature_degree: int | None = None,
    ):
        super().__init__(
            cell,
            degree,
            rtol=rtol,
            atol=atol,
            max_iterations=max_iterations,
            quadrature_degree=quadrature_degree,
        )
        condition = as_condition(condition)
        if not isinstance(condition, Periodic) or not condition.pin:
            raise ValueError(
                f"PlasticCell: condition={condition!r} is not supported; the plastic cell is "
                "periodic: use condition='periodic' (Periodic() with its pinned node)"
            )
        qdeg = self.quadrature_degree
        d = cell.dim
        n = voigt_size(d)
        self.size = n

        # -- the phases ---------------------------------------------------------------------
        kinds = [
            (name, tag, *_parse_phase(value, d, f"phase '{name}' (tag {tag})"))
            for name, tag, value in cell.phase_values(phases, "phase value")
        ]
        self.voids = tuple(name for name, _, kind, _ in kinds if kind == "void")
        if len(self.voids) == len(kinds):
            raise ValueError(
                f"PlasticCell: every phase of the '{cell.geometry}' cell is a void (None); give "
                "at least one phase a J2Plasticity or (E, nu)"
            )
        parent = cell.mesh
        num_parent = parent.topology.index_map(d).size_local
        parent_phase = cell.phase_index_of_cells(num_parent)
        if self.voids:
            void_index = [i for i, (_, _, kind, _) in enumerate(kinds) if kind == "void"]
            solid = np.flatnonzero(~np.isin(parent_phase, void_index)).astype(np.int32)
            self.mesh, entity_map, _, _ = dmesh.create_submesh(parent, d, solid)
            num_cells = self.mesh.topology.index_map(d).size_local
            cells_in_parent = entity_map.sub_topology_to_topology(
                np.arange(num_cells, dtype=np.int32), False
            )
            phase_of_cell = parent_phase[cells_in_parent]
        else:
            self.mesh = parent
            num_cells = num_parent
            phase_of_cell = parent_phase
        msh = self.mesh
        self._cells = np.arange(num_cells, dtype=np.int32)

        # -- quadrature spaces and the point bookkeeping ------------------------------------
        def quadrature_space(shape):
            element = basix.ufl.quadrature_element(msh.basix_cell(), value_shape=shape, degree=qdeg)
            return fem.functionspace(msh, element)

        Q_scalar, Q_stress, Q_tangent = (quadrature_space(s) for s in ((), (n,), (n, n)))
        points, _ = basix.make_quadrature(msh.basix_cell(), qdeg)
        num_q = points.shape[0]
        self.num_points = num_cells * num_q
        self._dofs = {
            name: Q.dofmap.list[:num_cells].reshape(-1)
            for name, Q in (("scalar", Q_scalar), ("stress", Q_stress), ("tangent", Q_tangent))
        }
        self._q_stress = fem.Function(Q_stress, name="stress")
        self._q_tangent = fem.Function(Q_tangent, name="tangent")
        dx = ufl.Measure("dx", domain=msh, metadata={"quadrature_degree": qdeg})
        # |det J| times the rule's weight at every point: int f dx = weights @ f, with the
        # rule of the forms.
        weights = fem.assemble_vector(fem.form(ufl.TestFunction(Q_scalar) * dx)).array
        self._weights = weights[self._dofs["scalar"]].copy()
        self._num_q = num_q
        phase_of_point = np.repeat(phase_of_cell, num_q)

        plastic_mask = np.zeros(self.num_points, dtype=bool)
        groups: dict[str, list[int]] = {}
        self._elastic: list[_Group] = []
        c_max = 0.0
        for index, (_, _, kind, value) in enumerate(kinds):
            at = np.flatnonzero(phase_of_point == index)
            if kind == "plastic":
                plastic_mask[at] = True
                # Equal laws (same parameters) share one vectorised return mapping.
                groups.setdefault(repr(value), []).append(index)
                mu, kappa = value.shear_modulus, value.bulk_modulus
                c_max = max(c_max, kappa + 4.0 * mu / 3.0)
            elif kind == "elastic":
                E, nu = value
                C3 = isotropic_stiffness(E, nu, 3)
                plane = [0, 1, 5]
                stiffness = C3[np.ix_(plane, plane)] if d == 2 else C3
                zz = C3[2, plane] if d == 2 else None
                self._elastic.append(_Group(at, slice(None), stiffness=stiffness, zz_row=zz))
                c_max = max(c_max, float(C3[0, 0]))
        self._plastic = np.flatnonzero(plastic_mask)
        m = self._plastic.size
        self.num_plastic_points = m
        self.state_shapes = {key: (m, *shape) for key, shape in STATE_SHAPES.items()}
        self._laws: list[_Group] = []
        for indices in groups.values():
            at = np.flatnonzero(np.isin(phase_of_point, indices))
            rows = np.searchsorted(self._plastic, at)
            if rows.size == m:  # one law on every plastic point: no gathers
                rows = slice(None)
            self._laws.append(_Group(at, rows, law=kinds[indices[0]][3]))
        self.phase_kinds = {name: kind for name, _, kind, _ in kinds}
        self._phase_of_cell = phase_of_cell

        # The elastic stiffness everywhere: the elastic points keep it for good, the plastic
        # ones are overwritten by the hook at every iterate.
        tangent = np.zeros((self.num_points, n, n))
        for group in self._elastic:
            tangent[group.points] = group.stiffness
        for group in self._laws:
            tangent[group.points] = group.law.elastic_stiffness()
        self._q_tangent.x.array.reshape(-1, n * n)[self._dofs["tangent"]] = tangent.reshape(
            -1, n * n
        )

        # -- the forms, compiled once -------------------------------------------------------
        self.V = fem.functionspace(msh, ("Lagrange", self.degree, (d,)))
        constraint = condition.constrain(self.V, lengths=cell.lengths)
        self.mpc, self.bcs = constraint.mpc, constraint.bcs
        dtype = PETSc.ScalarType
        self.macro_strain = fem.Constant(msh, np.zeros(n, dtype=dtype))
        self._selector = fem.Constant(msh, np.zeros(n, dtype=dtype))
        self.fluctuation = fem.Function(constraint.space, name="fluctuation")
        w = self.fluctuation
        sigma, C_alg = self._q_stress, self._q_tangent
        linear_options, snes_options = self.split_options(petsc_options)
        self.system = condition.system(
            self.V,
            lambda du, v: ufl.inner(ufl.dot(C_alg, ufl_strain(du)), ufl_strain(v)) * dx,
            lambda v: -ufl.inner(ufl.dot(C_alg, self._selector), ufl_strain(v)) * dx,
            lengths=cell.lengths,
            name="plastic_cell",
            petsc_options=linear_options or PLASTIC_SOLVER_OPTIONS,
            constraint=constraint,
        )
        self.solver = self.system.solver
        residual = fem.form(ufl.inner(sigma, ufl_strain(ufl.TestFunction(self.V))) * dx)
        self._strain = fem.Expression(self.macro_strain + ufl_strain(w), points)
        self._dw = self.system.load.duplicate()
        self.newton = self._make_newton(
            residual,
            w,
            self.system,
            snes_options=snes_options,
            linear_options=linear_options,
            prepare=self._return_mapping,
            note=lambda: f"{self._num_yielded} of {m} plastic points yield",
            domain="the micro strain is not finite at a quadrature point",
        )
        self.residual_reference = self._residual_reference(self.system, dx, c_max)

        # Per-iterate work arrays of the hook (the trial values of the current solve).
        self._committed: Mapping[str, np.ndarray] | None = None
        self._trial = {key: np.zeros(shape) for key, shape in self.state_shapes.items()}
        self._yielded = np.zeros(m, dtype=bool)
        self._stress = np.zeros((self.num_points, n))
        self._stress_zz = np.zeros(self.num_points)
        self._num_yielded = 0
        self._last: dict[str, np.ndarray] | None = None
        self._fields: dict[str, fem.Function] = {}
        self._displacement: tuple[fem.Function, fem.Expression] | None = None

    # -- the state -----------------------------------------------------------------------------
    def initial_state(self) -> dict[str, np.ndarray]:
        """The virgin state of the plastic points: zeros of :attr:`state_shapes`."""
        return {key: np.zeros(shape) for key, shape in self.state_shapes.items()}

    def plastic_points(self) -> np.ndarray:
        """Coordinates ``(m, d)`` of the plastic quadrature points, in the order of the state."""
        d = self.cell.dim
        points, _ = basix.make_quadrature(self.mesh.basix_cell(), self.quadrature_degree)
        x = ufl.SpatialCoordinate(self.mesh)
        expression = fem.Expression(x, points)
        values = expression.eval(self.mesh, self._cells).reshape(-1, d)
        return values[self._plastic]

    def _check_state(self, state) -> dict[str, np.ndarray]:
        where = (
            f"PlasticCell ('{self.cell.geometry}' cell, {self.num_plastic_points} plastic points)"
        )
        return require_named_arrays(
            state,
            self.state_shapes,
            f"{where}: state",
            "one row per plastic quadrature point of this cell (was it made for another cell, "
            "mesh or quadrature degree?); start from initial_state()",
        )

    def _check_strain(self, strain) -> np.ndarray:
        d, n = self.cell.dim, self.size
        labels = ", ".join(
            ("" if i == j else "2") + "E_" + "xyz"[i] + "xyz"[j] for i, j in VOIGT_PAIRS[d]
        )
        try:
            strain = np.array(strain, dtype=np.float64)
        except (TypeError, ValueError) as err:
            raise ValueError(f"the macro strain {strain!r} is not numeric") from err
        if strain.shape != (n,):
            mode = "plane strain" if d == 2 else "3D"
            raise ValueError(
                f"the macro strain has shape {strain.shape}; this {d}D cell ({mode}) needs the "
                f"Voigt strain ({labels}), shape ({n},)"
            )
        if not np.all(np.isfinite(strain)):
            raise ValueError(f"the macro strain is not finite: {strain.tolist()}")
        return strain

    # -- the hook ------------------------------------------------------------------------------
    def _return_mapping(self, w) -> bool:
        """Stress and tangent at every quadrature point of the iterate (the Newton hook)."""
        n = self.size
        strain = self._strain.eval(self.mesh, self._cells).reshape(-1, n)
        if not np.all(np.isfinite(strain)):
            return False
        stress, committed = self._stress, self._committed
        tangent = self._q_tangent.x.array.reshape(-1, n * n)
        for group in self._laws:
            rows = group.rows
            response = group.law.return_mapping(
                strain[group.points], {key: value[rows] for key, value in committed.items()}
            )
            stress[group.points] = response.stress
            self._stress_zz[group.points] = response.stress_3d[:, 2]
            tangent[self._dofs["tangent"][group.points]] = response.tangent.reshape(-1, n * n)
            for key, value in response.state.items():
                self._trial[key][rows] = value
            self._yielded[rows] = response.yielded
        for group in self._elastic:
            local = strain[group.points]
            stress[group.points] = local @ group.stiffness.T
            if group.zz_row is not None:
                self._stress_zz[group.points] = local @ group.zz_row
        self._q_stress.x.array.reshape(-1, n)[self._dofs["stress"]] = stress
        self._num_yielded = int(np.count_nonzero(self._yielded))
        return True

    # -- the solve -----------------------------------------------------------------------------
    @property
    def residual_norms(self) -> list[float]:
        """Residual norms ``||R||`` of the last solve, one per Newton iteration."""
        return self.newton.history

    def respond(
        self,
        strain,
        state: Mapping[str, np.ndarray] | None = None,
        *,
        max_iterations: int | None = None,
        line_search: str | None = None,
    ) -> PlasticCellResponse:
        """One increment: average stress, consistent tangent, updated state at the macro strain.

        Args:
            strain: The macro Voigt strain ``E`` (engineering shears; plane strain in 2D:
                ``(E_xx, E_yy, 2 E_xy)``), the total strain at the end of the increment.
            state: The committed internal variables of the plastic points
                (:attr:`state_shapes`), e.g. :meth:`initial_state` or the ``state`` of a
                previous response; default the virgin state. Never modified.
            max_iterations: Newton steps per start for this increment only (default the
                cell's ``max_iterations``): a remedy for a Newton that converges slowly
                while the set of yielding points settles.
            line_search: A SNES line search for this increment only (default ``"bt"``):
                ``"l2"`` is a remedy for a Newton that stalls with backtracking (measured on
                a perfectly plastic matrix around a void: ``bt`` fails after 25 steps, ``l2``
                converges in 9, ``bt`` in 36).

        Returns:
            A :class:`PlasticCellResponse`: ``Sigma``, ``dSigma/dE``, the updated state, the
            3D average stress, the points that yielded, the Newton steps.

        Raises:
            ValueError: If ``strain`` or ``state`` has the wrong shape or is not finite, or
                ``max_iterations`` is not an integer >= 1.
            CellSolveError: If Newton fails (every start), or the tangent's factorisation or
                the response is not finite; the message has the Newton log and the SNES
                reasons. The cell is back at its last converged fluctuation.
        """
        strain = self._check_strain(strain)
        committed = self.initial_state() if state is None else self._check_state(state)
        start = time.perf_counter()
        where = f"plastic cell '{self.cell.geometry}'"
        self._committed = committed
        self.macro_strain.value[:] = strain
        try:
            self.newton.solve(
                max(self.rtol * float(np.linalg.norm(strain)), self.atol) * self.residual_reference,
                max_iterations=max_iterations,
                line_search=line_search,
            )
        except NewtonFailure as failure:
            self.newton.restore()
            raise CellSolveError(
                f"{where}: Newton failed at the macro strain E = {strain.tolist()}; the cell is "
                f"back at its last converged state. Iterations:\n  {failure}"
            ) from None
        self.iterations = self.newton.iterations
        tangent_start = time.perf_counter()
        try:
            T = self._macro_tangent()
        except CellSolveError as err:
            self.newton.restore()
            raise CellSolveError(
                f"{where}: the tangent at E = {strain.tolist()} failed ({err}); the cell is back "
                "at its last converged state"
            ) from err
        volume = self.cell.volume
        stress = self._weights @ self._stress / volume
        stress_3d = np.zeros(6)
        if self.cell.dim == 2:
            stress_3d[[0, 1, 5]] = stress
            stress_3d[2] = self._weights @ self._stress_zz / volume
        else:
            stress_3d[:] = stress
        if not (np.all(np.isfinite(stress_3d)) and np.all(np.isfinite(T))):
            self.newton.restore()
            raise CellSolveError(
                f"{where}: the response at E = {strain.tolist()} is not finite; the cell is back "
                "at its last converged state"
            )
        self.newton.commit()
        response = PlasticCellResponse(
            stress=stress,
            tangent=T,
            state={key: value.copy() for key, value in self._trial.items()},
            stress_3d=stress_3d,
            yielded=self._yielded.copy(),
            iterations=self.iterations,
        )
        self._last = {
            "stress": self._stress.copy(),
            "stress_zz": self._stress_zz.copy(),
            "alpha": response.state["equivalent_plastic_strain"],
            "yielded": response.yielded,
        }
        now = time.perf_counter()
        self.tangent_seconds = now - tangent_start
        self.seconds = now - start
        return response

    def _macro_tangent(self) -> np.ndarray:
        """``dSigma/dE`` at the converged state, with the factorised Jacobian."""
        n = self.size
        solver = self.newton.factorise_at_solution()
        self.tangent_solver = self.newton.tangent_solver
        C = self._q_tangent.x.array.reshape(-1, n, n)[self._dofs["tangent"]]
        integral = np.einsum("p,pij->ij", self._weights, C)
        units = np.eye(n)

        def fill(k):
            self._selector.value[:] = units[k]
            self.system.assemble_load()

        loads, solutions = self._solve_load_cases(
            [f"tangent load case {label}" for label in VOIGT_LABELS[self.cell.dim]],
            fill,
            solver,
            self.system.load,
            lambda k: self._dw,
        )
        self._selector.value[:] = 0.0
        return self._energy_average(loads, solutions, integral, self.system.zeroed_entries)

    # -- fields for output ---------------------------------------------------------------------
    def fields(self) -> dict[str, fem.Function]:
        """Cell-wise (DG0) fields of the last successful solve, on :attr:`mesh`, for VTX.

        Cell averages of the quadrature values (exact for P1, one point per cell):
        ``"stress"`` (Voigt, ``(n,)``), ``"stress_zz"`` (2D only), ``"equivalent_plastic_
        strain"`` and ``"yielded"`` (the fraction of a cell's points that yielded in the last
        increment; both zero in elastic cells), ``"phase"`` (the phase tag). The functions
        are built once and overwritten by every call.

        Raises:
            RuntimeError: Before the first successful :meth:`respond`.
        """
        if self._last is None:
            raise RuntimeError("PlasticCell.fields(): no solve yet; call respond() first")
        every = {
            "stress": self._last["stress"],
            "equivalent_plastic_strain": self._at_all_points(self._last["alpha"]),
            "yielded": self._at_all_points(self._last["yielded"].astype(np.float64)),
        }
        if self.cell.dim == 2:
            every["stress_zz"] = self._last["stress_zz"]
        weights = self._weights.reshape(-1, self._num_q)
        total = weights.sum(axis=1)
        for name, values in every.items():
            shape = values.shape[1:]
            per_cell = values.reshape(-1, self._num_q, *shape)
            average = np.einsum("cq,cq...->c...", weights, per_cell) / total.reshape(
                -1, *([1] * len(shape))
            )
            self._dg0(name, shape).x.array.reshape(average.shape[0], -1)[self._dg0_dofs(name)] = (
                average.reshape(average.shape[0], -1)
            )
        tags = np.array(list(self.cell.phases.values()), dtype=np.float64)
        self._dg0("phase", ()).x.array[self._dg0_dofs("phase")] = tags[self._phase_of_cell]
        return dict(self._fields)

    def _at_all_points(self, plastic_values: np.ndarray) -> np.ndarray:
        values = np.zeros(self.num_points)
        values[self._plastic] = plastic_values
        return values

    def _dg0(self, name: str, shape: tuple[int, ...]) -> fem.Function:
        if name not in self._fields:
            element = ("DG", 0, shape) if shape else ("DG", 0)
            self._fields[name] = fem.Function(fem.functionspace(self.mesh, element), name=name)
        return self._fields[name]

    def _dg0_dofs(self, name: str) -> np.ndarray:
        return self._fields[name].function_space.dofmap.list[: self._cells.size, 0]

    def displacement(self) -> fem.Function:
        """The micro displacement ``u = eps(E) x + w`` of the last solve (on :attr:`mesh`).

        ``eps(E)`` is the symmetric macro strain tensor, so ``u`` is defined up to a rigid
        translation (the pinned node of ``w``); for warped pictures of the cell.
        """
        if self._displacement is None:
            d = self.cell.dim
            E = self.macro_strain
            index = {}
            for k, (i, j) in enumerate(VOIGT_PAIRS[d]):
                index[i, j] = index[j, i] = (k, 1.0 if i == j else 0.5)
            tensor = ufl.as_matrix(
                [[index[i, j][1] * E[index[i, j][0]] for j in range(d)] for i in range(d)]
            )
            u = fem.Function(self.V, name="displacement")
            expression = fem.Expression(
                ufl.dot(tensor, ufl.SpatialCoordinate(self.mesh)) + self.fluctuation,
                self.V.element.interpolation_points,
            )
            self._displacement = (u, expression)
        u, expression = self._displacement
        u.interpolate(expression)
        return u

    def reset(self) -> None:
        """Forget the converged fluctuation: the next call starts from ``w = 0``."""
        self.newton.reset()
        self.macro_strain.value[:] = 0.0

    def destroy(self) -> None:
        """Free the PETSc objects of this cell (and the options of its solvers)."""
        self.newton.destroy()
        self.system.destroy()
        self._dw.destroy()
