"""Transient micro models: the parabolic HMM flux and the double-porosity block exchange.

* :class:`TransientConductivityModel` answers the macro heat flux from a short transient
  cell simulation started from the local macro gradient (``u = G.y``, zero fluctuation)
  and averaged over a window with a smoothing kernel: the parabolic HMM of Abdulle & E
  (2003) and Ming & Zhang (2007). The window length and the kernel decide the error
  against the quasi-static ``K*`` (see :meth:`TransientConductivityModel.window_error`).
* :class:`BlockExchangeModel` answers the heat flowing from the fractures into the
  weakly conducting blocks of a double-porosity medium (Arbogast, Douglas & Hornung,
  1990): every macro point carries its own block, driven by the local macro (fracture)
  value as a Dirichlet condition, whose interior temperatures are the point's history.
  This is the memory term of the macro law.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping

import numpy as np

from ...cells.transient import DiffusionBlock, TransientConductivityCell
from ...geometry import UnitCell
from ..adapter import InputAdapter
from ..protocol import HISTORY_KEY, MicroModel, MicroResponse, SolveContext

__all__ = ["BlockExchangeModel", "MacroAxes", "TransientConductivityModel"]

#: Default window of :class:`TransientConductivityModel`, in relaxation times of the cell.
DEFAULT_WINDOW_RELAXATION_TIMES = 8.0


class TransientConductivityModel(MicroModel):
    """Macro heat flux from a windowed transient cell simulation (parabolic HMM).

    At a macro point with gradient ``G`` the cell relaxes from ``u = G.y`` (zero periodic
    fluctuation) under ``c dw/dt = div(K (G + grad w))``; the flux is averaged over the
    window ``[0, tau]`` with the kernel ``k``:

        q = -K_tau G,   K_tau = int_0^1 k(s) K(s tau) ds

    (:class:`~hmm_fem.cells.transient.TransientConductivityCell`). Since the cell problem
    is linear in ``G``, the ``d`` unit gradients are simulated together and the answer is
    a tensor; with constant phases it depends on no macro state, so the dispatcher runs
    the simulation once for the whole run (every point, every step), and the cell is
    factorised once per micro time step.

    The window is in cell time units (a unit cell; on a physical period ``eps`` one unit
    is ``eps^2`` of physical time). The initial transient decays like
    ``exp(-t / t_r)`` (``t_r`` the relaxation time); it enters the average as
    ``(tau/t_r)^-1`` with the uniform kernel, ``^-2`` with the linear one and ``^-3`` with
    the smooth one. Measured on the block cell (contrast 10): ``|K_tau - K*|/K*`` is
    4.2e-2 / 2.3e-2 / 3.2e-2 (uniform / linear / smooth) at ``tau = t_r``, 6.9e-3 /
    6.8e-4 / 8.1e-4 at ``8 t_r`` and 4.1e-3 / 2.1e-4 / 1.7e-4 at ``16 t_r``: the kernels
    that vanish at the start win by an order of magnitude from a few relaxation times on,
    the smooth one only beyond about ``8 t_r``.

    Args:
        cell: The unit cell.
        conductivities: Phase conductivities (constants), by phase name or tag.
        capacities: Phase heat capacities (constants), or one number.
        window: Window length ``tau`` (cell time); default
            ``DEFAULT_WINDOW_RELAXATION_TIMES`` (8) relaxation times of the cell; or
            ``"step"``: the macro time step seen from the cell, ``tau = dt / period^2``
            (read from the solve context: the model becomes time-dependent, keyed by the
            macro time and step, so it is simulated once per macro step, every point
            sharing it; the cell is factorised once per distinct ``dt``). Needs ``period``.
        kernel: ``"smooth"`` (default), ``"linear"``, ``"uniform"`` or a callable ``k(s)``.
        micro_steps: Backward-Euler steps over the window.
        degree: Lagrange degree of the cell fluctuation.
        period: The physical period ``eps`` (only with ``window="step"``).

    Attributes:
        cell_problem: The :class:`TransientConductivityCell` (built once).
        window: The window length used (cell time), or ``"step"``.
    """

    def __init__(
        self,
        cell: UnitCell,
        conductivities: Mapping,
        capacities: Mapping | float = 1.0,
        *,
        window: float | str | None = None,
        kernel: str | Callable = "smooth",
        micro_steps: int = 64,
        degree: int = 1,
        period: float | None = None,
    ):
        for key, value in dict(conductivities).items():
            if callable(value) or hasattr(value, "depends_on_temperature"):
                raise ValueError(
                    f"TransientConductivityModel takes constant phase conductivities; phase "
                    f"{key!r} has a law {value!r}. Use ConductivityModel for temperature-"
                    "dependent phases (quasi-static)"
                )
        self.cell_problem = TransientConductivityCell(cell, conductivities, capacities, degree)
        self.dim = cell.dim
        self.inputs = {"T": (), "grad_T": (self.dim,)}
        self.output_shape = (self.dim,)
        self.kernel = kernel
        self.micro_steps = int(micro_steps)
        if self.micro_steps < 1:
            raise ValueError(f"micro_steps must be >= 1, got {micro_steps}")
        self.period = None
        if isinstance(window, str):
            if window != "step" or period is None or not (np.isfinite(period) and period > 0):
                raise ValueError(
                    f"window={window!r}: give window='step' with the physical period "
                    f"(period={period!r} must be positive), or a window in cell time"
                )
            self.window = "step"
            self.period = float(period)
            self.time_dependent = True
            return
        if window is None:
            window = DEFAULT_WINDOW_RELAXATION_TIMES * self.cell_problem.relaxation_time()
        if not (np.isfinite(window) and window > 0):
            raise ValueError(f"the window must be a positive cell time, got {window!r}")
        self.window = float(window)

    def micro_state(self, inputs, parameters) -> np.ndarray:
        """No columns: with constant phases every point needs the same simulation."""
        n = np.asarray(inputs["T"]).reshape(-1).shape[0]
        return np.empty((n, 0))

    def solve(self, state: np.ndarray, context: SolveContext) -> dict[str, np.ndarray]:
        """The windowed flux tensor ``K_tau`` (``tau`` the macro step with ``window="step"``)."""
        window = self.window
        if window == "step":
            if not context.dt > 0:
                raise ValueError(
                    "TransientConductivityModel(window='step') needs a macro time step dt > 0 "
                    f"in the solve context, got {context.dt}; use it in a transient macro problem"
                )
            window = context.dt / self.period**2
        return {"K": self.cell_problem.windowed_tensor(window, self.kernel, self.micro_steps)}

    def respond(self, solutions, inputs, parameters) -> MicroResponse:
        """``q = -K_tau grad_T``, ``dq/dgrad_T = -K_tau``, ``dq/dT = 0``."""
        grad = np.asarray(inputs["grad_T"], dtype=np.float64).reshape(-1, self.dim)
        K = solutions["K"]
        return MicroResponse(
            value=-np.einsum("nij,nj->ni", K, grad),
            derivatives={"T": np.zeros_like(grad), "grad_T": -K},
            solutions=dict(solutions),
        )

    def relaxation_time(self) -> float:
        """The cell's relaxation time ``1/lambda_1`` (cell time units)."""
        return self.cell_problem.relaxation_time()


class BlockExchangeModel(MicroModel):
    """The heat flowing into a double-porosity block, with the block as the point's memory.

    Every macro point owns one block of side ``L`` (in the units of a unit cell, so the
    block fills ``L^2`` of the medium) with the scaled conductivity ``D`` (a physical
    ``eps^2 D`` on a period ``eps``) and capacity ``c_b``. A macro step of length ``dt``
    advances the block by backward Euler with the point's new macro (fracture)
    temperature ``U`` on its boundary (:class:`~hmm_fem.cells.transient.DiffusionBlock`)
    and returns the exchange flux per unit volume of the medium

        Q = (S(U) - S_old) / dt,   S = int_block c_b v dy,

    and ``dQ/dU``. The block's interior temperatures and its last boundary value are the
    point's history (trial until the macro step is committed). The macro law is then
    ``phi_f c_f dU/dt + Q = div(K_f* grad U)``
    (:class:`~hmm_fem.macro.double_porosity.DoublePorosityHeat`).

    Args:
        side: Block side ``L`` (cell units, ``0 < L < 1``).
        diffusivity: Scaled block conductivity ``D``.
        capacity: Block heat capacity ``c_b``.
        cells_per_side: Mesh cells along a block side.
        initial_temperature: Temperature of the blocks (and of their boundary) at the start.

    Attributes:
        block: The :class:`DiffusionBlock` (built once, factorised once per ``dt``).
    """

    time_dependent = True
    state_names = ("T",)

    def __init__(
        self,
        side: float,
        diffusivity: float,
        capacity: float = 1.0,
        *,
        cells_per_side: int = 16,
        initial_temperature: float = 0.0,
    ):
        if not 0.0 < float(side) < 1.0:
            raise ValueError(f"BlockExchangeModel: the block side must be in (0, 1), got {side}")
        self.block = DiffusionBlock(side, diffusivity, capacity, cells_per_side)
        self.inputs = {"T": ()}
        self.output_shape = ()
        self.history = {"block": (self.block.num_interior,), "boundary": ()}
        self.initial_temperature = float(initial_temperature)

    @property
    def block_fraction(self) -> float:
        """Volume fraction of the blocks in the medium, ``L^2``."""
        return self.block.volume

    def initial_history(self) -> dict[str, np.ndarray]:
        """Blocks at rest at the initial temperature."""
        return {
            "block": np.full(self.block.num_interior, self.initial_temperature),
            "boundary": np.array(self.initial_temperature),
        }

    def micro_state(self, inputs, parameters) -> np.ndarray:
        """One column: the macro (fracture) temperature ``U`` at the point."""
        return np.asarray(inputs["T"], dtype=np.float64).reshape(-1, 1)

    def solve(self, state: np.ndarray, context: SolveContext) -> dict[str, np.ndarray]:
        """Advance the point's block over ``context.dt`` to the boundary value ``U``."""
        if context.history is None:
            raise ValueError("BlockExchangeModel.solve needs the point's history in the context")
        dt = float(context.dt)
        if not dt > 0:
            raise ValueError(
                f"BlockExchangeModel needs a macro time step dt > 0, got {dt}; use it in a "
                "transient macro problem (DoublePorosityHeat), not a steady one"
            )
        U = float(state[0])
        old_state = np.asarray(context.history["block"], dtype=np.float64)
        old_boundary = float(context.history["boundary"])
        new_state, dS_dU = self.block.step(old_state, old_boundary, U, dt)
        stored_old = self.block.stored_heat(old_state, old_boundary)
        stored_new = self.block.stored_heat(new_state, U)
        return {
            "Q": np.array((stored_new - stored_old) / dt),
            "dQ_dT": np.array(dS_dU / dt),
            "S": np.array(stored_new),
            HISTORY_KEY: {"block": new_state, "boundary": np.array(U)},
        }

    def respond(self, solutions, inputs, parameters) -> MicroResponse:
        """``Q`` and ``dQ/dU`` at every point."""
        return MicroResponse(
            value=np.asarray(solutions["Q"], dtype=np.float64),
            derivatives={"T": np.asarray(solutions["dQ_dT"], dtype=np.float64)},
            solutions=dict(solutions),
        )

    def relaxation_time(self) -> float:
        """``1/lambda_1`` of the discrete block (cell time units)."""
        return self.block.relaxation_time()


class MacroAxes(InputAdapter):
    """A flux micro model seen by a macro problem of lower dimension (e.g. 1D on a 2D cell).

    The macro gradient ``g`` (``k`` components) is the cell gradient ``(g, 0, ...)``; the
    macro flux is the first ``k`` components of the cell's. This is exact when the
    transverse macro gradient vanishes, as in a strip one period wide with insulated or
    periodic long sides and a cell symmetric about its mid-lines (the quasi-1D validation
    problems of the transient models).

    Args:
        model: A micro model with inputs ``T`` and ``grad_T`` of shape ``(d,)``.
        dim: The macro dimension ``k <= d``.
    """

    def __init__(self, model: MicroModel, dim: int = 1):
        d = model.inputs["grad_T"][0]
        if not 1 <= int(dim) <= d:
            raise ValueError(f"MacroAxes: dim must be in 1..{d}, got {dim}")
        super().__init__(model, {"T": (), "grad_T": (int(dim),)}, (int(dim),))
        self.cell_dim = d
        self.dim = int(dim)

    def adapt(self, inputs):
        """The cell's inputs: the macro gradient padded with zeros."""
        grad = np.asarray(inputs["grad_T"], dtype=np.float64).reshape(-1, self.dim)
        padded = np.zeros((grad.shape[0], self.cell_dim))
        padded[:, : self.dim] = grad
        return {"T": inputs["T"], "grad_T": padded}

    def respond(self, solutions, inputs, parameters) -> MicroResponse:
        """The first ``k`` components of the wrapped response and tangents."""
        k = self.dim
        response = self.model.respond(solutions, self.adapt(inputs), parameters)
        return MicroResponse(
            value=response.value[:, :k],
            derivatives={
                "T": response.derivatives["T"][:, :k],
                "grad_T": response.derivatives["grad_T"][:, :k, :k],
            },
            solutions=response.solutions,
            standard_error=None
            if response.standard_error is None
            else response.standard_error[:, :k],
        )
