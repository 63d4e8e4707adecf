"""Elasticity cells as micro models: the macro stress ``sigma = C* eps`` (small strain).

The macro input at every point is the strain in Voigt notation (engineering shears,
order of :mod:`hmm_fem.voigt`); the response is the Voigt stress (no shear factors)
with the exact tangent ``d sigma / d strain = C*``. 2D cells are plane strain.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping

import numpy as np

from ...cells.conditions import CellCondition, as_condition
from ...cells.elasticity import ElasticityCell
from ...geometry import UnitCell
from ...materials.phases import as_stiffness
from ...voigt import voigt_size
from ..bank import CellBank
from ..protocol import MicroModel, MicroResponse

__all__ = ["ElasticityModel", "HyperelasticModel"]


class ElasticityModel(MicroModel):
    """The effective stress of a linear elastic periodic cell, for the FE² engine.

    Input at every macro point: ``strain``, the Voigt strain ``(e_xx, e_yy, 2 e_xy)`` in
    2D (plane strain) or ``(e_xx, e_yy, e_zz, 2 e_yz, 2 e_xz, 2 e_xy)`` in 3D. Response:
    the Voigt stress ``sigma = C* strain`` with the consistent tangent
    ``d sigma / d strain = C*`` (exact: the response is linear in the strain).

    The micro state does not contain the strain (the stress is linear in it). With one
    cell geometry the state is empty: the cell is solved once per run, whatever the
    number of macro points and Newton iterations. With a cell function the state is the
    volume fraction rounded to ``parameter_resolution``, and one cell is built and solved
    per distinct rounded value.

    Example:
        >>> model = ElasticityModel(cells.square(0.3), {"matrix": (1.0, 0.3),
        ...                                             "inclusion": (10.0, 0.2)})
        >>> model.evaluate({"strain": np.array([[1e-3, 0.0, 0.0]])}).value  # Voigt stress

    Args:
        cell: A :class:`UnitCell`, or a function ``f -> UnitCell`` building the cell for a
            volume fraction ``f`` (e.g. ``lambda f: cells.square(f)``). With a function the
            model takes the parameter ``volume_fraction``, rounded to multiples of
            ``parameter_resolution``; one cell is built per distinct rounded value.
        phases: Stiffness of every phase, by phase name or tag, as for
            :class:`ElasticityCell`: ``(E, nu)`` (isotropic; plane strain in 2D) or a
            symmetric positive definite Voigt stiffness matrix.
        degree: Lagrange degree of the cell fluctuations.
        bc: Cell boundary condition, ``"periodic"``, ``"kinematic"``, ``"traction"`` or a
            condition object (:mod:`hmm_fem.cells.conditions`)
            (see :class:`ElasticityCell`).
        parameter_resolution: Resolution of the volume fraction (with a cell function).
        dim: Dimension, only needed with a cell function (default 2).
        petsc_options: Cell solver options (default: those of :class:`ElasticityCell`).

    Attributes:
        dim: The spatial dimension (2: plane strain, or 3).
        size: The number of Voigt components, 3 in 2D and 6 in 3D.

    Raises:
        ValueError: For an unknown ``bc``, a non-positive ``parameter_resolution`` or a
            phase stiffness that is not valid (checked at construction).
        TypeError: If ``cell`` is neither a :class:`UnitCell` nor callable.
    """

    def __init__(
        self,
        cell: UnitCell | Callable[[float], UnitCell],
        phases: Mapping,
        *,
        degree: int = 1,
        bc: str | CellCondition = "periodic",
        parameter_resolution: float = 0.01,
        dim: int | None = None,
        petsc_options: dict | None = None,
    ):
        as_condition(bc)  # a clear error now for an unknown condition, not at the first solve
        if int(degree) < 1:
            raise ValueError(f"degree must be >= 1, got {degree}")
        self.phases = dict(phases)
        self.degree = int(degree)
        self.bc = bc
        self.petsc_options = petsc_options
        self.bank = CellBank(
            cell,
            lambda unit_cell: ElasticityCell(
                unit_cell,
                self.phases,
                degree=self.degree,
                bc=self.bc,
                petsc_options=self.petsc_options,
            ),
            parameter="volume_fraction",
            resolution=parameter_resolution,
            dim=dim,
            owner="ElasticityModel",
        )
        self.dim = self.bank.dim
        self.parameters = self.bank.parameters
        self.size = voigt_size(self.dim)
        # Validate the phase values now (the phase names need the cell: at the first build).
        for key, value in self.phases.items():
            as_stiffness(value, self.dim, f"stiffness of phase {key!r}")
        self.parameter_resolution = self.bank.resolution
        self.inputs = {"strain": (self.size,)}
        self.output_shape = (self.size,)
        self.state_names = self.parameters

    # -- the cell bank -------------------------------------------------------------------------
    def cell_problem(self, volume_fraction: float | None = None) -> ElasticityCell:
        """The (built-once) cell problem for a volume fraction (or the fixed cell).

        Args:
            volume_fraction: The (rounded) volume fraction; ignored with a fixed cell.

        Raises:
            ValueError: If the cell's dimension is not the model's.
        """
        return self.bank.get(volume_fraction)

    def effective_tensor(self, volume_fraction: float | None = None) -> np.ndarray:
        """C* (Voigt ``n x n``) of the fixed cell or of the cell at ``volume_fraction``.

        The volume fraction is used as given (not rounded); the cell is kept in the bank.
        """
        return self.cell_problem(volume_fraction).effective_tensor()

    @property
    def num_cells_built(self) -> int:
        """Number of distinct cells built so far."""
        return len(self.bank)

    def destroy(self) -> None:
        """Free the PETSc objects of every cell in the bank (the bank is emptied)."""
        self.bank.destroy()

    # -- the protocol -------------------------------------------------------------------------
    def micro_state(self, inputs, parameters) -> np.ndarray:
        """Zero columns (fixed cell) or the rounded ``volume_fraction`` (cell function)."""
        strain = np.asarray(inputs["strain"], dtype=np.float64).reshape(-1, self.size)
        return self.bank.rounded(parameters, strain.shape[0])

    def solve(self, state: np.ndarray, context=None) -> dict[str, np.ndarray]:
        """C* of the cell of this state: ``{"C": (n, n)}``."""
        f = float(state[0]) if self.bank.varies else None
        return {"C": self.cell_problem(f).effective_tensor()}

    def respond(self, solutions, inputs, parameters) -> MicroResponse:
        """``sigma = C* strain`` and ``d sigma / d strain = C*`` at every point."""
        strain = np.asarray(inputs["strain"], dtype=np.float64).reshape(-1, self.size)
        n = self.size
        C = np.asarray(solutions.get("C", np.empty((0, n, n))), dtype=np.float64).reshape(-1, n, n)
        stress = np.einsum("nij,nj->ni", C, strain)
        return MicroResponse(
            value=stress, derivatives={"strain": C.copy()}, solutions=dict(solutions)
        )


class HyperelasticModel(MicroModel):
    """The finite-strain response of a Neo-Hookean periodic cell, for the FE² engine.

    Input at every macro point: ``displacement_gradient``, the macro ``H = grad u``
    (``d x d``; the deformation gradient is ``F = I + H``). Response: the average first
    Piola-Kirchhoff stress ``P*(F)`` with the consistent tangent ``dP*/dH = A*`` from the
    converged micro Jacobian (see :meth:`HyperelasticCell.respond`). The micro state is
    ``H`` itself: every distinct macro state is one micro Newton solve, warm-started from
    the previous solve of the same cell; the dispatcher hands each rank a sorted block of
    states, so consecutive solves are close.

    Remedies (for a :class:`~hmm_fem.coupling.FailurePolicy`; the plain solve already
    tries a cold start from ``w = 0`` when the warm start fails):

    * ``"substeps"``: load sub-stepping from the cell's last converged state to ``H`` in
      :attr:`SUBSTEPS` increments, each warm-started, a failing one halved up to
      :attr:`BISECTIONS` times. For a macro step too large for one Newton solve.
    * ``"path_from_zero"``: the same from the undeformed state ``H = 0`` in
      :attr:`PATH_STEPS` increments: for a state far from the last one the rank solved
      (or when that one is past an instability).

    Both reach the same equilibrium as the plain solve where it converges (no history:
    the path changes how, not which, while the equilibrium is unique) and cost several
    Newton solves.

    Args:
        cell: The :class:`UnitCell`.
        phases: Phase name (or tag) -> ``(E, nu)`` of the Neo-Hookean phases.
        **options: Passed to :class:`HyperelasticCell` (``degree``, ``rtol``, ...).
    """

    remedies = ("substeps", "path_from_zero")
    #: Increments of the ``"substeps"`` remedy (before halvings).
    SUBSTEPS = 4
    #: Increments of the ``"path_from_zero"`` remedy (before halvings).
    PATH_STEPS = 8
    #: How often either remedy may halve a failed increment.
    BISECTIONS = 6

    def __init__(self, cell: UnitCell, phases: Mapping, **options):
        from ...cells.hyperelastic import HyperelasticCell

        self.cell = HyperelasticCell(cell, phases, **options)
        self.dim = cell.dim
        d = self.dim
        self.inputs = {"displacement_gradient": (d, d)}
        self.output_shape = (d, d)
        self.parameters = ()
        self.state_names = tuple(f"H{i}{j}" for i in range(d) for j in range(d))
        #: Micro Newton iterations summed over all solves (for statistics).
        self.newton_iterations = 0

    def micro_state(self, inputs, parameters) -> np.ndarray:
        """The macro displacement gradient, flattened: ``(n, d*d)``."""
        H = np.asarray(inputs["displacement_gradient"], dtype=np.float64)
        return H.reshape(H.shape[0], self.dim * self.dim)

    def solve(self, state: np.ndarray, context=None) -> dict[str, np.ndarray]:
        """One micro Newton solve: ``P*`` and ``A*`` at ``H = state``.

        ``context.remedy`` (a retry's) selects a load path (see the class docstring).

        Raises:
            ValueError: For a remedy this model does not offer.
            CellSolveError: If the Newton solve (or path) fails.
        """
        remedy = None if context is None else context.remedy
        H = np.asarray(state).reshape(self.dim, self.dim)
        if remedy is None:
            P, A = self.cell.respond(H)
        elif remedy == "substeps":
            P, A = self.cell.respond(
                H, substeps=self.SUBSTEPS, start="last", max_bisections=self.BISECTIONS
            )
        elif remedy == "path_from_zero":
            P, A = self.cell.respond(
                H, substeps=self.PATH_STEPS, start="zero", max_bisections=self.BISECTIONS
            )
        else:
            raise ValueError(
                f"HyperelasticModel offers the remedies {list(self.remedies)}, not {remedy!r}"
            )
        self.newton_iterations += self.cell.iterations
        return {"P": P, "A": A}

    def respond(self, solutions, inputs, parameters) -> MicroResponse:
        """``P*`` and ``dP*/dH = A*`` at every point."""
        return MicroResponse(
            value=solutions["P"],
            derivatives={"displacement_gradient": solutions["A"]},
            solutions=dict(solutions),
        )
