"""The skeleton of every cell problem: phase field, load cases on one factorisation, energy average.

Every cell problem of :mod:`hmm_fem.cells` is the same three pieces around its own forms
(in the spirit of SfePy's ``CorrNN`` / ``CoefSymSym``, where a new cell problem is a few
declarations):

1. **The phase field** (:class:`PhaseField`): a cell-wise constant (DG0) property of any
   value shape (a conductivity tensor, a Voigt stiffness, the Lame pair), written from
   per-phase values through the phase index of every dof; the phase volumes.
2. **The load cases on one factorisation** (:meth:`CellProblem._solve_load_cases`): the
   matrix is factorised once per state and every unit load case is one more right-hand
   side, assembled into one vector, solved and back-substituted; the loads ``b_i`` and the
   reduced solutions ``x_j`` are collected as arrays.
3. **The energy average** (:meth:`CellProblem._energy_average`): by Galerkin
   orthogonality of the correctors, the energy of the corrected fields is::

       T_ij |Y| = int_Y e_i . C e_j dx - b_i . x_j,

   (``b_i`` the load of the unit macro field ``e_i``, ``x_j`` the solution of case ``j``,
   the entries the condition ignores zeroed), with no field assembled; a dissipation
   (Stokes) is ``T_ij |Y| = b_i . x_j``.

:class:`LinearCellProblem` puts the three together: phase values in, checked effective
tensor out, one factorisation per state, the last tensor kept for the same phase values.
The conductivity, elasticity and Stokes cells are declarations on it; the hyperelastic
cell uses the pieces around a Newton iteration (:mod:`hmm_fem.cells.newton`).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping, Sequence

import numpy as np
from dolfinx import fem
from petsc4py import PETSc

from ..geometry import UnitCell
from .conditions import CellCondition, CellSystem, as_condition
from .solver import CellSolveError, check_effective_tensor

__all__ = ["PhaseField", "CellProblem", "LinearCellProblem"]


class PhaseField:
    """A cell-wise constant (DG0) property of any value shape, filled from per-phase values.

    Example:
        >>> field = PhaseField(cell, (2, 2), "conductivity",
        ...                    lambda value, what: as_conductivity(value, 2, what), "conductivity")
        >>> field.set({"matrix": 1.0, "inclusion": 10.0})
        >>> field.function          # the DG0 tensor field, for the forms
        >>> field.integral()        # sum_p |Y_p| K_p

    Args:
        cell: The unit cell (mesh with phase tags).
        shape: The value shape of the property (``()`` for a scalar).
        name: The name of the DG0 function.
        parse: ``parse(value, what)`` returns the validated value of one phase as an array
            of shape ``shape`` (or raises ``ValueError`` naming ``what``).
        quantity: What the values are (``"conductivity"``), for the error messages.

    Attributes:
        function: The DG0 function (value shape ``shape``).
        values: The current phase values, ``(num_phases, *shape)`` in the order of
            ``cell.phases`` (``None`` before the first :meth:`set`).
        volumes: The meshed volume of every phase, ``(num_phases,)``.
    """

    def __init__(
        self,
        cell: UnitCell,
        shape: tuple[int, ...],
        name: str,
        parse: Callable[[object, str], np.ndarray],
        quantity: str,
    ):
        self.cell = cell
        self.shape = tuple(shape)
        self.parse = parse
        self.quantity = quantity
        msh = cell.mesh
        element = ("DG", 0, self.shape) if self.shape else ("DG", 0)
        self.function = fem.Function(fem.functionspace(msh, element), name=name)
        imap = msh.topology.index_map(cell.dim)
        num_cells = imap.size_local + imap.num_ghosts
        self._dof_of_cell = self.function.function_space.dofmap.list[:num_cells, 0]
        self._phase_of_cell = cell.phase_index_of_cells(num_cells)
        self._phase_of_dof = np.empty(num_cells, dtype=np.int32)
        self._phase_of_dof[self._dof_of_cell] = self._phase_of_cell
        volumes = cell.phase_volumes()
        self.volumes = np.array([volumes[n] for n in cell.phases])
        self.values: np.ndarray | None = None

    def parse_values(self, values: Mapping) -> np.ndarray:
        """The validated ``(num_phases, *shape)`` array of ``values`` (by phase name or tag)."""
        return np.array(
            [
                self.parse(value, f"{self.quantity} of phase '{name}' (tag {tag})")
                for name, tag, value in self.cell.phase_values(values, self.quantity)
            ],
            dtype=np.float64,
        ).reshape((len(self.cell.phases), *self.shape))

    def set(self, values: Mapping) -> None:
        """Validate ``values`` (all phases first: a bad one changes nothing) and write them."""
        parsed = self.parse_values(values)
        size = int(np.prod(self.shape))
        self.function.x.array.reshape(-1, size)[:] = parsed.reshape(-1, size)[self._phase_of_dof]
        self.function.x.scatter_forward()
        self.values = parsed

    def integral(self) -> np.ndarray:
        """``int_Y property dx = sum_p |Y_p| value_p`` (shape ``shape``)."""
        return np.tensordot(self.volumes, self.values, axes=1)

    def indicator(self, phase: int, function: fem.Function) -> fem.Function:
        """Write the indicator of phase number ``phase`` into the scalar DG0 ``function``."""
        dofs = function.function_space.dofmap.list[: self._phase_of_cell.size, 0]
        function.x.array[dofs] = (self._phase_of_cell == phase).astype(np.float64)
        return function

    def tags(self) -> fem.Function:
        """The phase tag of every cell as a scalar DG0 field named ``phase`` (for viewing)."""
        phase = fem.Function(fem.functionspace(self.cell.mesh, ("DG", 0)), name="phase")
        tags = np.array(list(self.cell.phases.values()), dtype=np.float64)
        dofs = phase.function_space.dofmap.list[: self._phase_of_cell.size, 0]
        phase.x.array[dofs] = tags[self._phase_of_cell]
        return phase


class CellProblem:
    """The pieces shared by every cell problem (see the module docstring).

    A subclass builds its space, forms and :class:`~hmm_fem.cells.conditions.CellSystem`
    and calls :meth:`_solve_load_cases` and :meth:`_energy_average`;
    :meth:`_recall` / :meth:`_remember` keep the last result for the same state.

    Args:
        cell: The unit cell.
        degree: Polynomial degree of the unknown.
        min_degree: The smallest admissible ``degree``.

    Attributes:
        cell: The unit cell.
        degree: The polynomial degree.
        seconds: Wall time of the last solve.
    """

    def __init__(self, cell: UnitCell, degree: int, min_degree: int = 1):
        if int(degree) < min_degree:
            raise ValueError(f"degree must be >= {min_degree}, got {degree}")
        self.cell = cell
        self.degree = int(degree)
        self.seconds = 0.0
        self._stored_for: np.ndarray | None = None
        self._stored = None

    # -- (b) the load cases on one factorisation -----------------------------------------------
    @staticmethod
    def _solve_load_cases(
        labels: Sequence[str],
        fill: Callable[[int], None],
        solver,
        load: PETSc.Vec,
        target: Callable[[int], PETSc.Vec],
        finish: Callable[[int, PETSc.Vec], None] | None = None,
    ) -> tuple[np.ndarray, np.ndarray]:
        """Solve every load case with the current factorisation of ``solver``.

        Args:
            labels: One label per load case (for the error messages).
            fill: ``fill(k)`` writes the right-hand side of case ``k`` into ``load``.
            solver: A factorised solver (``solver.solve(b, x, label)``, checked).
            load: The right-hand side vector, reused by every case.
            target: ``target(k)``, the vector the solution of case ``k`` is written to.
            finish: ``finish(k, x)`` after the solve (the back-substitution).

        Returns:
            ``(loads, solutions)``: the right-hand sides and reduced solutions, one row per
            case (local arrays).
        """
        loads = np.empty((len(labels), load.getLocalSize()))
        solutions = np.empty_like(loads)
        for k, label in enumerate(labels):
            fill(k)
            x = target(k)
            solver.solve(load, x, label=f" ({label})")
            loads[k] = load.array_r
            solutions[k] = x.array_r
            if finish is not None:
                finish(k, x)
        return loads, solutions

    # -- (c) the energy average ----------------------------------------------------------------
    def _energy_average(
        self,
        loads: np.ndarray,
        solutions: np.ndarray,
        average: np.ndarray | None = None,
        zeroed: np.ndarray = (),
    ) -> np.ndarray:
        """The cell average of the energy (or dissipation) of the load cases.

        ``(average - loads @ solutions.T) / |Y|`` (Galerkin orthogonality: the energy of the
        corrected fields, ``average`` the integral of the unperturbed energy), or with
        ``average=None`` the dissipation form ``loads @ solutions.T / |Y|``. The entries
        ``zeroed`` of the loads (periodic slaves) are ignored. Not symmetrised.
        """
        loads[:, np.asarray(zeroed, dtype=np.int64)] = 0.0
        work = loads @ solutions.T
        if average is None:
            return work / self.cell.volume
        return (np.asarray(average, dtype=np.float64) - work) / self.cell.volume

    # -- the stored result ---------------------------------------------------------------------
    def _recall(self, key: np.ndarray):
        """The result remembered for ``key`` (the state), or ``None``."""
        if self._stored is not None and np.array_equal(self._stored_for, key):
            return self._stored
        return None

    def _remember(self, key: np.ndarray, result) -> None:
        self._stored_for = np.array(key, copy=True)
        self._stored = result

    def _forget(self) -> None:
        self._stored_for = self._stored = None

    @property
    def num_dofs(self) -> int:
        """Number of degrees of freedom of the unknown's space (before constraints)."""
        return self.V.dofmap.index_map.size_global * self.V.dofmap.index_map_bs


class LinearCellProblem(CellProblem):
    """A linear cell problem: phase values in, checked effective tensor out.

    A subclass declares, in its constructor, a :class:`PhaseField` (``self.phases``, or
    ``None`` without phases) and calls :meth:`_build` with its space, condition, forms and
    unit load cases. :meth:`_evaluate` then factorises once per state, solves the load
    cases, forms the energy average and checks it (symmetric positive definite; a subclass
    may override :meth:`_checked`, :meth:`_factorise` and :meth:`_fill_load`).

    Attributes:
        system: The :class:`~hmm_fem.cells.conditions.CellSystem` (matrix, solver, loads).
        solutions: The solution function of every load case.
        raw_tensor: The energy average of the last solve, before symmetrisation and checks.
    """

    phases: PhaseField | None = None

    def _build(
        self,
        V: fem.FunctionSpace,
        condition: str | CellCondition,
        bilinear,
        linear,
        *,
        load: fem.Constant,
        unit_loads: np.ndarray,
        labels: Sequence[str],
        solution_names: Sequence[str],
        name: str,
        what: str,
        petsc_options: dict | None = None,
        bcs: Sequence[fem.DirichletBC] = (),
    ) -> None:
        """Build the system and the solution functions.

        Args:
            V: The space of the unknown.
            condition: The boundary condition (a name or a condition object).
            bilinear: ``a(u, v)`` (UFL).
            linear: ``L(v)`` (UFL), depending on the macro load ``load``.
            load: The constant through which the unit load cases enter ``linear``.
            unit_loads: The value of ``load`` in every case (one row per case).
            labels: The label of every case (error messages).
            solution_names: The name of every solution function.
            name: Short name for the solver's options prefix.
            what: What the tensor is (error messages), e.g. ``"K* of the 'square' cell"``.
            petsc_options: Linear solver options (default: the condition's).
            bcs: Further Dirichlet conditions.
        """
        self.V = V
        self.condition = as_condition(condition)
        self.system: CellSystem = self.condition.system(
            V,
            bilinear,
            linear,
            lengths=self.cell.lengths,
            name=name,
            petsc_options=petsc_options,
            bcs=bcs,
        )
        self.mpc, self.bcs = self.system.mpc, self.system.bcs
        self._a, self._L, self._b = self.system.a, self.system.L, self.system.load
        self._load = load
        self._unit_loads = np.asarray(unit_loads, dtype=np.float64)
        self._labels = list(labels)
        self._what = what
        self.solutions = [fem.Function(self.system.space, name=n) for n in solution_names]
        self.raw_tensor: np.ndarray | None = None

    @property
    def solver(self):
        """The factorised linear solver of the cell matrix."""
        return self.system.solver

    def _factorise(self) -> None:
        """Assemble and factorise the cell matrix at the current coefficients."""
        self.system.solver.factorise()

    def _fill_load(self, k: int) -> None:
        """Assemble the load of case ``k`` into ``system.load``."""
        self._load.value[...] = self._unit_loads[k]
        self.system.assemble_load()

    def _average(self) -> np.ndarray | None:
        """``int_Y e_i . C e_j dx`` of the unit loads ``e_i`` (``None`` without phases).

        ``C`` is the phase property (a scalar, or the tensor acting on the loads: the
        conductivity on a gradient, the Voigt stiffness on a strain), ``e_i`` the rows of
        the unit loads.
        """
        if self.phases is None:
            return None
        loads = self._unit_loads.reshape(len(self._unit_loads), -1)
        integral = self.phases.integral()
        if integral.ndim == 0:
            return float(integral) * (loads @ loads.T)
        return loads @ integral.reshape(loads.shape[1], loads.shape[1]) @ loads.T

    def _checked(self, raw: np.ndarray) -> np.ndarray:
        """The effective tensor from the raw energy average: symmetrised, SPD-checked."""
        return check_effective_tensor(0.5 * (raw + raw.T), self._what)

    def _evaluate(self) -> np.ndarray:
        """The effective tensor at the current phase values (stored for the same values)."""
        key = self.phases.values if self.phases is not None else np.empty(0)
        stored = self._recall(key)
        if stored is not None:
            return stored.copy()
        start = time.perf_counter()
        system = self.system
        self._factorise()
        loads, solutions = self._solve_load_cases(
            self._labels,
            self._fill_load,
            system.solver,
            system.load,
            lambda k: system.target(self.solutions[k]),
            lambda k, x: system.back_substitute(x, self.solutions[k]),
        )
        self._load.value[...] = 0.0
        for w in self.solutions:
            if not np.all(np.isfinite(w.x.array)):
                raise CellSolveError(f"{w.name} of the '{self.cell.geometry}' cell is not finite")
        self.raw_tensor = self._energy_average(
            loads, solutions, self._average(), system.zeroed_entries
        )
        tensor = self._checked(self.raw_tensor)
        self._remember(key, tensor)
        self.seconds = time.perf_counter() - start
        return tensor.copy()

    def destroy(self) -> None:
        """Free the PETSc objects of this cell."""
        self.system.destroy()
