"""Pore-scale Stokes cells as micro models: Darcy's law ``q = -(k/mu) grad p``."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from ...cells.stokes import PermeabilityCell
from ...geometry import UnitCell
from ..bank import CellBank
from ..protocol import MicroModel, MicroResponse

__all__ = ["PermeabilityModel"]


class PermeabilityModel(MicroModel):
    """The Darcy flux of a periodic pore cell, for the FE² engine.

    Inputs at every macro point: the pressure ``p`` and its gradient ``grad_p``.
    Response: the Darcy flux ``q = -(k*/mu) grad_p`` (k* from a periodic Stokes cell, in
    units of the cell side squared times ``length_scale**2``), with the tangents
    ``dq/dgrad_p = -k*/mu`` and ``dq/dp``. The micro state is the solid fraction
    rounded to ``parameter_resolution`` (a macro field) or empty (one geometry): one
    Stokes cell is built and solved per distinct state, once per run.

    Compaction: with ``compaction`` (a law ``p -> solid fraction`` with ``value`` and
    ``derivative``, e.g. :class:`hmm_fem.cells.LinearLaw`) the solid fraction follows the
    pressure and the problem is nonlinear. Then ``k*`` is interpolated linearly between
    cells at the multiples of ``parameter_resolution`` (each built and solved once), so
    ``k*(phi)`` is continuous and ``dq/dp = -(dk*/dphi)(dphi/dp) grad_p / mu`` uses the
    slope of the interpolant.

    Args:
        cell: A :class:`UnitCell`, or a function ``solid_fraction -> UnitCell``
            (e.g. ``lambda f: cells.square(f)``; the inclusion is the solid).
        viscosity: Dynamic viscosity ``mu`` of the fluid.
        length_scale: Physical side of the cell (the permeability scales with its square).
        parameter_resolution: Resolution of the solid fraction (with a cell function).
        dim: Dimension, only needed with a cell function (default 2).
        compaction: Optional law ``p -> solid fraction`` (needs a cell function).
    """

    def __init__(
        self,
        cell: UnitCell | Callable[[float], UnitCell],
        viscosity: float = 1.0,
        length_scale: float = 1.0,
        parameter_resolution: float = 0.01,
        dim: int | None = None,
        compaction=None,
    ):
        if not viscosity > 0 or not length_scale > 0:
            raise ValueError(
                f"PermeabilityModel: viscosity and length_scale must be positive, got "
                f"{viscosity}, {length_scale}"
            )
        self.viscosity = float(viscosity)
        self.length_scale = float(length_scale)
        # One Stokes cell per distinct solid fraction, solved once; only k* is kept.
        self.bank = CellBank(
            cell,
            self._solve_cell,
            parameter="solid_fraction",
            resolution=parameter_resolution,
            dim=dim,
            owner="PermeabilityModel",
        )
        self.dim = self.bank.dim
        self.parameters = self.bank.parameters
        self.parameter_resolution = self.bank.resolution
        self.compaction = compaction
        if compaction is not None:
            if not self.bank.varies:
                raise ValueError("compaction needs a cell function solid_fraction -> UnitCell")
            self.parameters = ()
        self.inputs = {"p": (), "grad_p": (self.dim,)}
        self.output_shape = (self.dim,)
        self.state_names = self.parameters
        self._built: dict[float | None, np.ndarray] = {}

    @property
    def num_cells_built(self) -> int:
        """Number of distinct cells built and solved so far."""
        return len(self.bank)

    def _solve_cell(self, unit_cell: UnitCell) -> np.ndarray:
        problem = PermeabilityCell(unit_cell)
        try:
            return problem.permeability() * self.length_scale**2
        finally:
            problem.destroy()

    def permeability(self, solid_fraction: float | None = None) -> np.ndarray:
        """``k*`` (physical units) of the cell for a solid fraction (or the fixed cell)."""
        return self.bank.get(solid_fraction)

    def micro_state(self, inputs, parameters) -> np.ndarray:
        """The rounded solid fraction (one column), or no column for one geometry.

        With compaction: the pressure (the solid fraction follows from it).
        """
        p = np.asarray(inputs["p"], dtype=np.float64).reshape(-1)
        if self.compaction is not None:
            return p[:, None]
        return self.bank.rounded(parameters, p.size)

    def solve(self, state: np.ndarray, context=None) -> dict[str, np.ndarray]:
        """``k*`` (and ``dk*/dp`` with compaction) at one state."""
        if self.compaction is None:
            k = self.permeability(float(state[0]) if len(state) else None)
            return {"k": k, "dk_dp": np.zeros_like(k)}
        p = float(state[0])
        phi = float(self.compaction.value(p))
        res = self.parameter_resolution
        lower = np.floor(phi / res) * res
        upper = lower + res
        k_lower, k_upper = self.permeability(round(lower, 12)), self.permeability(round(upper, 12))
        weight = (phi - lower) / res
        slope = (k_upper - k_lower) / res
        return {
            "k": (1 - weight) * k_lower + weight * k_upper,
            "dk_dp": slope * float(self.compaction.derivative(p)),
        }

    def respond(self, solutions, inputs, parameters) -> MicroResponse:
        """``q = -(k*/mu) grad_p``, ``dq/dgrad_p = -k*/mu``, ``dq/dp = -(dk*/dp/mu) grad_p``."""
        grad = np.asarray(inputs["grad_p"], dtype=np.float64).reshape(-1, self.dim)
        mobility = solutions["k"] / self.viscosity
        return MicroResponse(
            value=-np.einsum("nij,nj->ni", mobility, grad),
            derivatives={
                "p": -np.einsum("nij,nj->ni", solutions["dk_dp"] / self.viscosity, grad),
                "grad_p": -mobility,
            },
            solutions=dict(solutions),
        )
