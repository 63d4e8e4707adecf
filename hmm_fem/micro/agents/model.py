"""Agent patches as a stochastic micro model: density and gradient in, growth rate and flux out.

:class:`AgentPatchModel` puts any *patch simulator* behind the micro seam
(:class:`~hmm_fem.micro.MicroModel`). A patch simulator is an object with

* ``dim``, ``patch_measure`` (the measure of one patch, for the covered fraction);
* ``run_patches(density, gradient, rng) -> PatchEstimate``: lift ``n`` patches from the
  densities ``(n,)`` and gradients ``(n, dim)`` at their centres, run one burst, and return
  the time-averaged growth rate ``(n,)`` and flux ``(n, dim)`` with their standard errors
  (:class:`~hmm_fem.micro.agents.lattice.PatchEstimate`);
* optionally ``mean_field_tangent(density) -> (dR/du (n,), dJ/dgrad_u (n, dim, dim))``:
  the derivatives of the law of its mean-field limit, the model's tangent.

:class:`~hmm_fem.micro.agents.lattice.LatticeWalkers` (vectorised counts) and
:class:`~hmm_fem.micro.agents.mesa_adapter.MesaPatches` (a Mesa model) are two.

The model's inputs are ``u`` (scalar) and ``grad_u`` (``(dim,)``); its response at a point
is the vector ``[R, J_1, ..., J_dim]`` (growth rate, then flux), with a standard error of
the same shape. The seam's ``solve(state, context)`` runs one patch from the point's own
stream (``context.rng()``, so the :class:`~hmm_fem.coupling.Dispatcher` gives the same
answers on any number of ranks); :meth:`AgentPatchModel.solve_batch` runs many patches in
one vectorised call from one stream, which the macro problem
(:class:`hmm_fem.macro.PatchReactionDiffusion`) uses with one stream per block of patches.

The tangent (``derivatives`` of the response) is that of the mean-field law, ``dR/du =
r (1 - 2u)`` and ``dJ/dgrad_u = -D I`` for the walkers: the estimates are noisy, their
derivative is not estimated; an implicit macro solver needs a smooth approximate
tangent. Without a mean-field law the derivatives are NaN, so that a solver that uses
them fails at once instead of converging to something wrong.
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np

from ..protocol import MicroModel, MicroResponse, SolveContext

__all__ = ["AgentPatchModel"]


class AgentPatchModel(MicroModel):
    """A patch simulator as a stochastic micro model (growth rate and flux of agents).

    Example:
        >>> import numpy as np
        >>> from hmm_fem.micro.agents import AgentPatchModel, LatticeWalkers
        >>> walkers = LatticeWalkers(1, 0.05, 1.0, 1.0, 1e4, burst_time=0.01)
        >>> model = AgentPatchModel(walkers, seed=3)
        >>> response = model.evaluate({"u": np.array([0.5]), "grad_u": np.array([[-0.2]])})
        >>> response.value.shape, response.standard_error.shape   # [R, J] at one point
        ((1, 2), (1, 2))

    Args:
        simulator: The patch simulator (see the module docstring).
        seed: Seed of the random streams.

    Attributes:
        stochastic: ``True``.
        site_updates: Work of all solves so far (lattice sites times micro steps, as the
            simulator counts it).
    """

    stochastic = True

    def __init__(self, simulator, seed: int = 0):
        for name in ("dim", "run_patches"):
            if not hasattr(simulator, name):
                raise TypeError(
                    f"{type(simulator).__name__} is not a patch simulator: it lacks '{name}' "
                    "(see hmm_fem.micro.agents.model for what a patch simulator provides)"
                )
        if simulator.dim not in (1, 2, 3):
            raise ValueError(f"the simulator's dim must be 1, 2 or 3, got {simulator.dim!r}")
        self.simulator = simulator
        self.dim = int(simulator.dim)
        self.seed = int(seed)
        self.inputs = {"u": (), "grad_u": (self.dim,)}
        self.output_shape = (1 + self.dim,)
        self.state_names = ("u",) + tuple(f"du_dx{i}" for i in range(self.dim))
        self.site_updates = 0

    def micro_state(self, inputs: Mapping[str, np.ndarray], parameters=None) -> np.ndarray:
        """The rows ``[u, grad_u]`` (the patch is lifted from both)."""
        u = np.asarray(inputs["u"], dtype=float).reshape(-1, 1)
        grad = np.asarray(inputs["grad_u"], dtype=float).reshape(len(u), self.dim)
        return np.hstack([u, grad])

    def solve_batch(self, states: np.ndarray, context: SolveContext) -> dict[str, np.ndarray]:
        """Run one patch per state row, all from the stream of ``context`` (vectorised).

        Args:
            states: ``(n, 1 + dim)`` rows ``[u, grad_u]``.
            context: The context whose ``rng()`` drives all the patches.

        Returns:
            ``{"value": (n, 1 + dim), "standard_error": (n, 1 + dim)}``.
        """
        states = np.asarray(states, dtype=float).reshape(-1, 1 + self.dim)
        estimate = self.simulator.run_patches(states[:, 0], states[:, 1:], context.rng())
        self.site_updates += int(getattr(estimate, "site_updates", 0))
        value = np.column_stack([estimate.rate, estimate.flux])
        error = np.column_stack([estimate.rate_error, estimate.flux_error])
        return {"value": value, "standard_error": error}

    def solve(self, state: np.ndarray, context: SolveContext) -> dict[str, np.ndarray]:
        """One patch lifted from ``state = [u, grad_u]``, from the point's own stream."""
        result = self.solve_batch(np.asarray(state, dtype=float)[None, :], context)
        return {name: array[0] for name, array in result.items()}

    def respond(self, solutions, inputs, parameters=None) -> MicroResponse:
        """The estimates, their standard errors, and the mean-field tangent."""
        value = np.asarray(solutions["value"], dtype=float).reshape(-1, 1 + self.dim)
        n = len(value)
        du = np.full((n, 1 + self.dim), np.nan)
        dgrad = np.full((n, 1 + self.dim, self.dim), np.nan)
        tangent = getattr(self.simulator, "mean_field_tangent", None)
        if tangent is not None:
            u = np.asarray(inputs["u"], dtype=float).reshape(n)
            rate_du, flux_dgrad = tangent(u)
            du[:] = 0.0
            du[:, 0] = rate_du
            dgrad[:] = 0.0
            dgrad[:, 1:, :] = flux_dgrad
        return MicroResponse(
            value=value,
            derivatives={"u": du, "grad_u": dgrad},
            solutions=dict(solutions),
            standard_error=np.asarray(solutions["standard_error"], dtype=float).reshape(n, -1),
        )
