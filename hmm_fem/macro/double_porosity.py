"""Double-porosity heat conduction: fracture conduction with the memory of the blocks.

The homogenised law of a medium of highly conducting fractures around weakly conducting
blocks whose diffusion time is comparable to the macro time scale (Arbogast, Douglas &
Hornung, 1990; block conductivity ``eps^2 D`` on a period ``eps``):

    phi_f c_f dU/dt + Q = div(K_f* grad U) + s,   Q = d/dt int_block c_b v dy,

where ``v`` solves the block problem ``c_b dv/dt = D lap_y v`` with ``v = U`` on the
block boundary at every macro point. ``Q`` is a convolution of ``dU/dt`` with the block's
relaxation kernel: the memory term. ``K_f*`` is the effective conductivity of the
fracture network (a conductivity cell with insulating blocks), answered by any flux
micro model (e.g. :class:`~hmm_fem.micro.cell_models.ConductivityModel`); ``Q`` comes
from :class:`~hmm_fem.micro.cell_models.transient.BlockExchangeModel`, whose blocks are
the points' histories.

Limits: fast blocks (``D -> infinity``) give the quasi-static law with the total heat
capacity ``<c> dU/dt = div(K_f* grad U)``; impermeable blocks (``D -> 0``) the
fracture-only law ``phi_f c_f dU/dt = div(K_f* grad U)``.
"""

from __future__ import annotations

import ufl

from ..coupling import coupling_of, micro_operator
from ..micro.cell_models.transient import BlockExchangeModel
from ..micro.protocol import MicroModel
from .heat import TransientHeat

__all__ = ["DoublePorosityHeat"]


class DoublePorosityHeat(TransientHeat):
    """Backward-Euler double-porosity heat conduction with one block per macro point.

    Example:
        >>> blocks = BlockExchangeModel(side=0.5, diffusivity=0.2)
        >>> fractures = ConductivityModel(block_cell(8, 0.5), {"matrix": 1.0, "inclusion": 1e-9})
        >>> heat = DoublePorosityHeat(mesh, fractures, blocks, fracture_capacity=0.75, dt=0.01,
        ...                           dirichlet=[(left, 1.0)])
        >>> heat.step()

    Args:
        mesh: The macro mesh.
        flux_model: Micro model of the fracture flux (inputs ``T``, ``grad_T``).
        block_model: The :class:`BlockExchangeModel` of the blocks.
        fracture_capacity: ``phi_f c_f``, the heat capacity of the fractures per unit
            volume of the medium.
        dt: Time step.
        quadrature_degree: Quadrature degree of both micro operators.
        initial_temperature: Initial temperature (must equal the blocks' initial one).
        **kwargs: As for :class:`~hmm_fem.macro.heat.TransientHeat` (``dirichlet``,
            ``source``, ``degree`` ...).

    Attributes:
        exchange: The exchange flux ``Q`` (UFL external operator).
        exchange_coupling: Its :class:`~hmm_fem.coupling.MicroCoupling`.
    """

    def __init__(
        self,
        mesh,
        flux_model: MicroModel,
        block_model: BlockExchangeModel,
        fracture_capacity=1.0,
        dt: float = 0.1,
        quadrature_degree: int = 2,
        initial_temperature: float = 0.0,
        **kwargs,
    ):
        if not isinstance(block_model, BlockExchangeModel):
            raise TypeError(
                f"block_model must be a BlockExchangeModel, got {type(block_model).__name__}"
            )
        if float(initial_temperature) != block_model.initial_temperature:
            raise ValueError(
                f"the macro initial temperature {initial_temperature} differs from the blocks' "
                f"{block_model.initial_temperature}; give BlockExchangeModel("
                f"initial_temperature={initial_temperature})"
            )
        self.block_model = block_model
        self._exchange_degree = int(quadrature_degree)
        super().__init__(
            mesh,
            flux_model,
            heat_capacity=fracture_capacity,
            dt=dt,
            initial_temperature=initial_temperature,
            quadrature_degree=quadrature_degree,
            **kwargs,
        )

    def _transient_terms(self, v):
        storage = super()._transient_terms(v)
        self.exchange = micro_operator(
            self.block_model,
            self.mesh,
            {"T": self.T},
            quadrature_degree=self._exchange_degree,
            name="exchange",
        )
        self.exchange_coupling = coupling_of(self.exchange)
        return storage + self.exchange * v * ufl.dx

    @property
    def statistics(self):
        """Micro statistics of both couplings, fracture flux and blocks (this rank, whole run)."""
        return self.problem.statistics()

    def block_heat(self):
        """Cell averages of the heat stored in the blocks at the last evaluation.

        ``int_block c_b v dy`` per unit volume of the medium, ``(num_owned_cells,)``; divide by
        ``c_b L^2`` for a mean block temperature.
        """
        return self.exchange_coupling.cell_averages("S")
