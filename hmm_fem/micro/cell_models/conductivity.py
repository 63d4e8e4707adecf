"""Conductivity cells as micro models: the macro heat flux ``q = -K*(T, f) grad T``."""

from __future__ import annotations

from collections.abc import Callable, Mapping

import numpy as np

from ...cells.conductivity import ConductivityCell
from ...geometry import UnitCell
from ...materials.laws import as_law
from ..bank import CellBank
from ..protocol import MicroModel, MicroResponse

__all__ = ["ConductivityModel"]


class ConductivityModel(MicroModel):
    """The effective heat flux of a periodic conductivity cell, for the FE² engine.

    Inputs at every macro point: the temperature ``T`` and its gradient ``grad_T``.
    Response: ``q = -K*(T, f) grad_T`` with the consistent tangent
    ``dq/dgrad_T = -K*`` and ``dq/dT = -(dK*/dT) grad_T``. ``dK*/dT`` is exact: the
    phase-law derivatives contracted with the cell's Hellmann-Feynman sensitivities
    (:meth:`ConductivityCell.sensitivities`), no finite difference and no extra solve.

    The micro state is ``(T, f)``: T only if some phase law depends on temperature, the
    volume fraction ``f`` only if the cell geometry is a macro field. A cell with
    constant phases and one geometry has an empty state and is solved once. A cell is
    built when a state first needs it, with the phase laws evaluated at that state's
    temperature (so a law that is only defined at positive absolute temperatures, such as
    :class:`~hmm_fem.materials.laws.ArrheniusLaw`, is never evaluated elsewhere).

    Args:
        cell: A :class:`UnitCell`, or a function ``f -> UnitCell`` building the cell for a
            volume fraction ``f`` (e.g. ``lambda f: cells.square(f)``). With a function the
            model takes the parameter ``volume_fraction``, rounded to multiples of
            ``parameter_resolution``; one cell is built per distinct rounded value.
        laws: Phase name (or tag) -> a law from :mod:`hmm_fem.materials.laws` or a constant.
        degree: Lagrange degree of the cell correctors.
        parameter_resolution: Resolution of the volume fraction (with a cell function).
        dim: Dimension, only needed with a cell function (default 2).
        petsc_options: Cell solver options (default
            :data:`~hmm_fem.cells.DEFAULT_SOLVER_OPTIONS`, a direct Cholesky).
    """

    def __init__(
        self,
        cell: UnitCell | Callable[[float], UnitCell],
        laws: Mapping,
        *,
        degree: int = 1,
        parameter_resolution: float = 0.01,
        dim: int | None = None,
        petsc_options: dict | None = None,
    ):
        self.laws = {key: as_law(law) for key, law in dict(laws).items()}
        self.degree = degree
        self.petsc_options = petsc_options
        self.bank = CellBank(
            cell,
            lambda unit_cell, phases: ConductivityCell(
                unit_cell, phases, degree=self.degree, petsc_options=self.petsc_options
            ),
            parameter="volume_fraction",
            resolution=parameter_resolution,
            dim=dim,
            owner="ConductivityModel",
        )
        self.dim = self.bank.dim
        self.parameters = self.bank.parameters
        self.parameter_resolution = self.bank.resolution
        self.temperature_dependent = any(law.depends_on_temperature for law in self.laws.values())
        self.inputs = {"T": (), "grad_T": (self.dim,)}
        self.output_shape = (self.dim,)
        self.state_names = (("T",) if self.temperature_dependent else ()) + self.parameters

    # -- the cell bank -------------------------------------------------------------------------
    def cell_problem(self, volume_fraction: float | None = None, T: float | None = None):
        """The (built-once) cell problem for a volume fraction (or the fixed cell).

        Args:
            volume_fraction: The (rounded) volume fraction; ignored with a fixed cell.
            T: Temperature at which the phase laws are evaluated if the cell is built now
                (needed when a law depends on temperature).
        """
        if T is None and self.temperature_dependent and not self.bank.has(volume_fraction):
            raise ValueError(
                "ConductivityModel.cell_problem: the phase laws depend on temperature; give T "
                "at which to build the cell"
            )
        return self.bank.get(volume_fraction, self._phase_values(0.0 if T is None else T))

    @property
    def num_cells_built(self) -> int:
        """Number of distinct cells built so far."""
        return len(self.bank)

    def _phase_values(self, T: float) -> dict:
        return {name: law.value(T) for name, law in self.laws.items()}

    # -- the protocol -------------------------------------------------------------------------
    def micro_state(self, inputs, parameters) -> np.ndarray:
        """Columns: ``T`` (if temperature-dependent), rounded ``volume_fraction`` (if a field)."""
        T = np.asarray(inputs["T"], dtype=np.float64).reshape(-1, 1)
        columns = [T] if self.temperature_dependent else []
        columns.append(self.bank.rounded(parameters, T.shape[0]))
        return np.hstack(columns)

    def solve(self, state: np.ndarray, context=None) -> dict[str, np.ndarray]:
        """K* and dK*/dT at one state."""
        T = float(state[0]) if self.temperature_dependent else 0.0
        f = float(state[-1]) if self.bank.varies else None
        phases = self._phase_values(T)
        problem = self.bank.get(f, phases)
        K = problem.effective_tensor(phases)
        dK_dT = np.zeros_like(K)
        if self.temperature_dependent:
            names = list(problem.cell.phases)
            tag_to_name = {tag: name for name, tag in problem.cell.phases.items()}
            rates = [None] * len(names)
            for key, law in self.laws.items():
                rates[names.index(tag_to_name.get(key, key))] = np.asarray(
                    law.derivative(T), dtype=np.float64
                )
            if all(r.ndim == 0 for r in rates):  # one sparse product per phase
                dK_dT = np.einsum("p,pij->ij", np.array(rates), problem.phase_sensitivities())
            else:
                full = np.array([r * np.eye(self.dim) if r.ndim == 0 else r for r in rates])
                dK_dT = np.einsum("pijkl,pkl->ij", problem.sensitivities(), full)
        return {"K": K, "dK_dT": dK_dT}

    def respond(self, solutions, inputs, parameters) -> MicroResponse:
        """``q = -K* grad_T``, ``dq/dgrad_T = -K*``, ``dq/dT = -(dK*/dT) grad_T``."""
        grad = np.asarray(inputs["grad_T"], dtype=np.float64).reshape(-1, self.dim)
        K, dK_dT = solutions["K"], solutions["dK_dT"]
        flux = -np.einsum("nij,nj->ni", K, grad)
        return MicroResponse(
            value=flux,
            derivatives={"T": -np.einsum("nij,nj->ni", dK_dT, grad), "grad_T": -K},
            solutions=dict(solutions),
        )
