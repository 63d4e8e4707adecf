"""The J2 elastoplastic periodic cell as a micro model with history (small-strain FE²).

The cell-based twin of :class:`~hmm_fem.micro.MaterialPointModel`: at every macro point a
:class:`~hmm_fem.cells.PlasticCell` is solved from the point's committed internal
variables (its history), and the updated ones are returned to the dispatcher, which
keeps them as trial until the macro step is committed (or rolled back).
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np

from ...cells.plastic import PlasticCell
from ...geometry import UnitCell
from ...materials.phases import VOIGT_LABELS
from ..protocol import HISTORY_KEY, MicroModel, MicroResponse, SolveContext

__all__ = ["PlasticityModel"]


class PlasticityModel(MicroModel):
    """The average stress of a J2 elastoplastic periodic cell, for the FE² engine.

    Input at every macro point: ``strain``, the macro Voigt strain (engineering shears;
    2D cells are plane strain: ``(E_xx, E_yy, 2 E_xy)``; 3D: 6 components). Response: the
    average Voigt stress ``Sigma`` with the consistent macro tangent ``dSigma/dE`` from
    the converged micro Jacobian (:meth:`PlasticCell.respond`).

    History (per macro point; the dispatcher stores it, keys the solves by its content,
    commits, rolls back and saves it to ``.npz``): the internal variables of the cell's
    ``m`` plastic quadrature points (:attr:`PlasticCell.num_plastic_points`, in the
    order of :meth:`PlasticCell.plastic_points`), full 3D Voigt as in
    :class:`~hmm_fem.materials.J2Plasticity`:

    * ``"plastic_strain"``: ``(m, 6)`` (engineering shears);
    * ``"back_stress"``: ``(m, 6)``;
    * ``"equivalent_plastic_strain"``: ``(m,)``;

    ``13 m`` floats per macro point (:attr:`history_size`).

    The micro state is the strain; a solve reads ``context.history`` (never modifies it)
    and returns ``stress`` ``(n,)``, ``tangent`` ``(n, n)``, ``stress_3d`` ``(6,)`` (the
    full 3D average stress: ``Sigma_zz`` in plane strain), ``yielded_fraction`` (of the
    plastic points, in this increment), ``iterations`` (micro Newton steps) and the
    updated history under ``"history"``. Consecutive solves warm-start from the previous
    converged fluctuation of the (one) cell.

    Remedies (for a :class:`~hmm_fem.coupling.FailurePolicy`; the plain solve already
    tries a cold start and falls back to LU): ``"more_iterations"`` (:attr:`MORE_ITERATIONS`
    times the cell's Newton steps) and ``"l2_line_search"`` (PETSc's secant line search
    ``l2`` instead of backtracking), both for this increment only. They change how Newton
    gets there, not the discrete equilibrium of the increment. Sub-stepping is not offered:
    the history holds the internal variables but not the macro strain of the last step,
    so the increment's start is unknown.

    Example:
        >>> law = J2Plasticity(1.0, 0.3, 0.01, isotropic_hardening=0.1, dim=2)
        >>> model = PlasticityModel(cells.square(0.2), {"matrix": law, "inclusion": None})
        >>> dispatcher = Dispatcher(model, MPI.COMM_SELF)
        >>> dispatcher.evaluate({"strain": strains})      # trial histories
        >>> dispatcher.commit()                           # the step is accepted

    Args:
        cell: The unit cell.
        phases: By phase name or tag: a :class:`~hmm_fem.materials.J2Plasticity`, ``(E,
            nu)`` or ``None`` (a void), as for :class:`~hmm_fem.cells.PlasticCell`.
        **cell_options: Passed to :class:`~hmm_fem.cells.PlasticCell` (``degree``,
            ``rtol``, ``petsc_options``, ...).

    Attributes:
        cell: The :class:`~hmm_fem.cells.PlasticCell`.
        dim: 2 (plane strain) or 3.
        size: Number of Voigt components, 3 or 6.
        newton_iterations: Micro Newton steps summed over all solves.
        solves: Number of micro solves.
        seconds: Wall time of all solves.
    """

    remedies = ("more_iterations", "l2_line_search")
    #: The factor of the ``"more_iterations"`` remedy.
    MORE_ITERATIONS = 4

    def __init__(self, cell: UnitCell, phases: Mapping, **cell_options):
        self.cell = PlasticCell(cell, phases, **cell_options)
        self.dim = cell.dim
        self.size = self.cell.size
        self.inputs = {"strain": (self.size,)}
        self.output_shape = (self.size,)
        self.parameters = ()
        self.history = dict(self.cell.state_shapes)
        self.state_names = tuple(f"strain_{label}" for label in VOIGT_LABELS[self.dim])
        self.newton_iterations = 0
        self.solves = 0
        self.seconds = 0.0

    @property
    def history_size(self) -> int:
        """Floats of one macro point's history (``13 m``)."""
        return int(sum(np.prod(shape) for shape in self.history.values()))

    def initial_history(self) -> dict[str, np.ndarray]:
        """The virgin internal variables (zeros of :attr:`history`)."""
        return self.cell.initial_state()

    def micro_state(self, inputs, parameters) -> np.ndarray:
        """The macro strain, ``(n, size)``."""
        strain = np.asarray(inputs["strain"], dtype=np.float64)
        return strain.reshape(strain.shape[0], self.size)

    def solve(self, state: np.ndarray, context: SolveContext) -> dict[str, np.ndarray]:
        """One micro increment from the committed history ``context.history``.

        ``context.remedy`` (a retry's) changes the Newton (see the class docstring).

        Raises:
            ValueError: Without a history, or for a remedy this model does not offer.
            CellSolveError: If the micro Newton fails.
        """
        if context.history is None:
            raise ValueError(
                "PlasticityModel.solve needs the point's committed history in context.history "
                "(the dispatcher provides it; for a first step use initial_history())"
            )
        options = {}
        if context.remedy == "more_iterations":
            options["max_iterations"] = self.MORE_ITERATIONS * self.cell.max_iterations
        elif context.remedy == "l2_line_search":
            options["line_search"] = "l2"
        elif context.remedy is not None:
            raise ValueError(
                f"PlasticityModel offers the remedies {list(self.remedies)}, not {context.remedy!r}"
            )
        response = self.cell.respond(
            np.asarray(state, dtype=np.float64), context.history, **options
        )
        self.newton_iterations += response.iterations
        self.solves += 1
        self.seconds += self.cell.seconds
        m = max(self.cell.num_plastic_points, 1)
        return {
            "stress": response.stress,
            "tangent": response.tangent,
            "stress_3d": response.stress_3d,
            "yielded_fraction": np.array(np.count_nonzero(response.yielded) / m),
            "iterations": np.array(float(response.iterations)),
            HISTORY_KEY: response.state,
        }

    def respond(self, solutions, inputs, parameters) -> MicroResponse:
        """``Sigma`` and ``dSigma/dE`` at every point."""
        n = self.size
        stress = np.asarray(solutions.get("stress", np.empty((0, n))), dtype=np.float64)
        tangent = np.asarray(solutions.get("tangent", np.empty((0, n, n))), dtype=np.float64)
        return MicroResponse(
            value=stress.reshape(-1, n),
            derivatives={"strain": tangent.reshape(-1, n, n)},
            solutions=dict(solutions),
        )

    def destroy(self) -> None:
        """Free the PETSc objects of the cell."""
        self.cell.destroy()
