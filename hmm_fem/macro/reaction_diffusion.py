"""Macro reaction–diffusion whose growth rate and flux come from micro patches (HMM).

The balance of a cell density ``u``:

    u_t + div J = R,        J = J(u, grad u),  R = R(u, grad u),

with ``J`` and ``R`` answered by a (stochastic) micro model at one patch per macro cell: a
patch at the cell's midpoint is lifted from the density and gradient there, runs a burst,
and returns its time-averaged growth rate and agent flux with their standard errors
(:class:`hmm_fem.micro.agents.AgentPatchModel`; any :class:`~hmm_fem.micro.MicroModel`
with inputs ``u``, ``grad_u`` and the response ``[R, J_1, ..., J_d]`` will do). The
boundary is closed (no flux). Weak form with P1 elements, for a test function ``v``:

    int u_t v dx = int J . grad v dx + int R v dx,

``J`` constant on every cell (the cell's patch: a midpoint rule, consistent to second
order), the mass lumped (so the scheme is explicit: Heun's second-order method, two micro
evaluations per step, or forward Euler). Why explicit: every step asks the patches anew at
the current state, the way HMM estimates a missing constitutive law on the fly; an implicit
step would need a tangent of noisy estimates. The step is limited by the diffusive
stability bound ``dt < 2 / lambda_max(M_L^-1 A)`` (``h^2 / 2D`` in 1D), which the problem
checks when the model tells its diffusivity.

**The reaction at the nodes** (``reaction="per_capita"``, the default). A patch sits at the
cell midpoint, where the density is the mean of the vertex values; the midpoint rule for
``int R v`` then gives an exponential tail ``u ~ exp(-lam x)`` the growth
``r (1 + cosh(lam h)) / 2`` instead of ``r``: 3 % too much at ``lam h = 1/2``, and a
Fisher–KPP front 3 % too fast (measured). Instead the patch's per-capita rate ``g_c = R_c /
u_c`` is averaged to the nodes with the lumped weights and multiplied by the nodal
density, ``R_i = u_i sum_c g_c int_c v_i / m_i``: exact for linear growth, second order
otherwise, and with the lumped mass the reaction is then nodal like the time derivative.
This assumes ``R = 0`` at ``u = 0`` (no immigration); a patch at ``u_c <= 0`` contributes
no growth. ``reaction="midpoint"`` uses ``int R v`` as it stands (any ``R``).
With the mean-field law at the patches, ``h = 0.5``, Heun and ``dt = 0.04``, the fitted
front speed of 1D Fisher–KPP is within 0.1 % of ``2 sqrt(D r)``; with ``"midpoint"`` it
is 2.8 % fast.

**Why HMM and not gap-tooth patch dynamics.** Each patch is lifted from the local density
and gradient and answers a growth rate and a flux: a constitutive law estimated on the fly,
so the macro problem stays an ordinary finite-element problem on any DOLFINx simplex mesh,
in parallel, and the bursts are short against the macro step (8 micro steps, 1.25e-3 of
time, per stage of a step of 0.04 in the tests). Gap-tooth patches
(:mod:`hmm_fem.equation_free.patches`) evolve the micro state for the whole run, coupled
through edge values at every micro step: they save in space only, at most 5x at 20 %
coverage before any overhead, where the HMM patches also save in time
(``benchmarks/patches.py``: 16x in wall time against the full agent simulation).

**Only simplex meshes.** One patch per cell sees the gradient at the centre only; on Q1
quadrilaterals the checkerboard mode has no gradient there, so it is neither damped nor
seen (an hourglass mode: a wavy initial front left a 0.85/1.05 checkerboard).

**Noise at the leading edge.** Where a patch holds a handful of agents its estimates are
noisy and can push the macro density below zero; such a patch is lifted empty (no growth,
counted in :attr:`PatchReactionDiffusion.negative_lifts`), while an upward push grows: a
ratchet that speeds a pulled front up, the more the noisier the patches. Measured against
the same scheme with the exact mean-field law, 1D patches of 4 sites (2 replicas) run
+0.2 % fast at ``K = 1e6`` agents per site, +1 % at ``1e5`` and +15 % at ``1e3``; 2D
patches of 3 x 3 sites +2.4 to +3.5 % at ``1e6`` and +0.04 % at ``1e8``. Agent counts per
site make a large ``K`` cost nothing.

**Random streams independent of the number of ranks.** A model with ``solve_batch``
(vectorised patches) is evaluated in blocks: the states of all patches are gathered, sorted
by the input (original) cell index, which does not depend on the partition, and cut into
blocks of ``block_size`` patches; every block is one vectorised call with its own stream,
seeded from ``(model seed, block, step, stage)``, and the blocks are dealt to the ranks
whole. A model without ``solve_batch`` goes through the
:class:`~hmm_fem.coupling.Dispatcher` (one stream per patch). Either way the run is the
same on any number of ranks.
"""

from __future__ import annotations

import time as _time

import numpy as np
import ufl
from dolfinx import fem

from ..coupling import Dispatcher
from ..micro.protocol import MicroModel, SolveContext
from .lumped import PatchMesh

__all__ = ["PatchReactionDiffusion"]

class PatchReactionDiffusion:
    """``u_t + div J = R`` on a DOLFINx mesh, ``J`` and ``R`` from one micro patch per cell.

    Example:
        A 1D invasion front from agent patches (see ``demos/demo_tissue_invasion.py``):

        >>> walkers = LatticeWalkers(1, 0.025, 1.0, 1.0, 1e5, core_sites=2,
        ...                          burst_time=0.005)
        >>> mesh = dolfinx.mesh.create_interval(MPI.COMM_WORLD, 100, [0.0, 50.0])
        >>> problem = PatchReactionDiffusion(mesh, AgentPatchModel(walkers), dt=0.04,
        ...                                  initial_density=lambda x: x[0] < 2)
        >>> problem.run(20.0)
        >>> problem.mass()                     # the front position, here (u = 1 behind it)

    Args:
        mesh: The macro simplex mesh (intervals, triangles, tetrahedra; the geometric and
            topological dimensions agree).
        model: Micro model with inputs ``u`` (scalar) and ``grad_u`` (``(dim,)``) and the
            response ``[R, J_1, ..., J_dim]``.
        dt: Macro time step.
        initial_density: A number, or a callable of the ``(gdim, n)`` coordinates (the
            interpolation convention of DOLFINx) giving the initial density.
        scheme: ``"heun"`` (second order, two evaluations per step) or ``"euler"``.
        reaction: ``"per_capita"`` (the growth at the nodes, see above) or ``"midpoint"``.
        block_size: Patches per random stream (vectorised call) of a batched model.
        diffusivity: Diffusivity for the stability check; default: the model's simulator's
            ``diffusivity`` if it has one (else the check is skipped with a warning).
        state_resolution: The patches are lifted from the density and gradient rounded to
            multiples of this: values that differ by round-off (the sums of an assembly
            differ between partitions) then draw the same agents, so a seeded run does not
            depend on the number of ranks. Far below the agents' own resolution ``1/K``.

    Attributes:
        u: The density (P1 function).
        time: Current time.
        steps: Steps taken.
        covered_fraction: Total patch measure over the domain measure (``None`` if the
            model does not say how large a patch is).
        rate, flux: DG0 functions of the last estimates (``R``, ``J``), and
            ``rate_error``, ``flux_error`` their standard errors.
        stable_time_step: The stability bound of the explicit step (``None`` unchecked).
        micro_seconds, macro_seconds: Wall time in the micro evaluations (this rank) and
            in the rest of the steps.
        evaluations: Collective micro evaluations.
        negative_lifts: Patch evaluations at a negative macro density (lifted as 0).

    Raises:
        ValueError: For a mesh of mixed or unknown cells, a model with the wrong inputs or
            response, a bad scheme, time step or block size, a time step above the
            stability bound, or patches larger than the smallest cell.
    """

    def __init__(
        self,
        mesh,
        model: MicroModel,
        *,
        dt: float,
        initial_density=0.0,
        scheme: str = "heun",
        reaction: str = "per_capita",
        block_size: int = 128,
        diffusivity: float | None = None,
        state_resolution: float = 1e-9,
    ):
        self.patch_mesh = pm = PatchMesh(
            mesh,
            " (one patch per cell sees the gradient at the cell centre only, where the "
            "checkerboard mode of Q1 quadrilaterals and hexahedra has none: that mode "
            "is then undamped, an hourglass instability)",
        )
        tdim = pm.dim
        expected = {"u": (), "grad_u": (tdim,)}
        got = {name: tuple(shape) for name, shape in model.inputs.items()}
        if got != expected or tuple(model.output_shape) != (1 + tdim,):
            raise ValueError(
                f"the micro model must have inputs {expected} and response shape "
                f"({1 + tdim},) = [R, J] on this {tdim}D mesh; got inputs {got} and shape "
                f"{tuple(model.output_shape)}"
            )
        if scheme not in ("euler", "heun"):
            raise ValueError(f"scheme must be 'euler' or 'heun', got {scheme!r}")
        if reaction not in ("per_capita", "midpoint"):
            raise ValueError(f"reaction must be 'per_capita' or 'midpoint', got {reaction!r}")
        if not (np.isfinite(state_resolution) and state_resolution >= 0):
            raise ValueError(f"state_resolution must be finite and >= 0, got {state_resolution!r}")
        if not (np.isfinite(dt) and dt > 0):
            raise ValueError(f"dt must be positive and finite, got {dt!r}")
        if isinstance(block_size, bool) or int(block_size) != block_size or block_size < 1:
            raise ValueError(f"block_size must be a positive integer, got {block_size!r}")
        self.mesh = mesh
        self.model = model
        self.comm = mesh.comm
        self.dim = tdim
        self.dt = float(dt)
        self.scheme = scheme
        self.reaction = reaction
        self.block_size = int(block_size)
        self.state_resolution = float(state_resolution)
        self.time = 0.0
        self.steps = 0
        self.evaluations = 0
        self.negative_lifts = 0
        self.micro_seconds = 0.0
        self.macro_seconds = 0.0

        self.V = pm.V
        self.u = fem.Function(self.V, name="density")
        if callable(initial_density):
            self.u.interpolate(lambda x: np.asarray(initial_density(x), dtype=float))
        else:
            self.u.x.array[:] = float(initial_density)
        self.u.x.scatter_forward()
        Q = fem.functionspace(mesh, ("DG", 0))
        Qv = fem.functionspace(mesh, ("DG", 0, (tdim,)))
        self.rate = fem.Function(Q, name="growth_rate")
        self.per_capita_rate = fem.Function(Q, name="per_capita_growth_rate")
        self.flux = fem.Function(Qv, name="flux")
        self.rate_error = fem.Function(Q, name="growth_rate_error")
        self.flux_error = fem.Function(Qv, name="flux_error")

        self.num_cells = pm.num_cells
        self._cells = pm.cells
        self.patch_ids = pm.patch_ids
        self._u_at = fem.Expression(self.u, pm.midpoint)
        self._grad_at = fem.Expression(ufl.grad(self.u), pm.midpoint)
        self.patch_centres = pm.patch_centres
        self._q_dofs = Q.dofmap.list[: self.num_cells, 0]
        self._qv_dofs = Qv.dofmap.list[: self.num_cells, 0]

        v = ufl.TestFunction(self.V)
        if reaction == "midpoint":
            self._rhs = fem.form(
                ufl.inner(self.flux, ufl.grad(v)) * ufl.dx + self.rate * v * ufl.dx
            )
            self._growth = None
        else:
            self._rhs = fem.form(ufl.inner(self.flux, ufl.grad(v)) * ufl.dx)
            self._growth = fem.form(self.per_capita_rate * v * ufl.dx)
        self._lumped = pm.lumped
        self._owned = pm.owned
        self.domain_measure = pm.domain_measure
        smallest = pm.smallest_cell
        patch_measure = getattr(getattr(model, "simulator", None), "patch_measure", None)
        self.covered_fraction = None
        if patch_measure is not None:
            if patch_measure > smallest * (1 + 1e-12):
                raise ValueError(
                    f"a patch (measure {patch_measure:.3g}) is larger than the smallest cell "
                    f"({smallest:.3g}): patches of neighbouring cells would overlap; use a "
                    "smaller patch or a coarser mesh"
                )
            total = self.comm.allreduce(self.num_cells)
            self.covered_fraction = total * patch_measure / self.domain_measure

        if diffusivity is None:
            diffusivity = getattr(getattr(model, "simulator", None), "diffusivity", None)
        self.stable_time_step = None
        if diffusivity is None:
            import warnings

            warnings.warn(
                "the stability of the explicit step is not checked: the model does not tell "
                "its diffusivity; pass diffusivity=... to check it",
                RuntimeWarning,
                stacklevel=2,
            )
        else:
            self.stable_time_step = pm.stability_bound(float(diffusivity))
            if self.dt > self.stable_time_step:
                raise ValueError(
                    f"dt = {self.dt:.4g} exceeds the stability bound "
                    f"{self.stable_time_step:.4g} of the explicit step (diffusivity "
                    f"{diffusivity:g}); lower dt or coarsen the mesh"
                )

        self._batched = hasattr(model, "solve_batch")
        self.dispatcher = (
            None
            if self._batched
            else Dispatcher(model, self.comm, state_tolerance=self.state_resolution)
        )

    # -- the micro evaluation --------------------------------------------------------------------
    def _evaluate(self, stage: int) -> None:
        """Fill ``rate``/``flux`` (and errors) from the patches at the current ``u``."""
        start = _time.perf_counter()
        u = self._u_at.eval(self.mesh, self._cells).reshape(self.num_cells)
        grad = self._grad_at.eval(self.mesh, self._cells).reshape(self.num_cells, self.dim)
        self.negative_lifts += self.comm.allreduce(int((u < 0).sum()))
        inputs = {"u": u, "grad_u": grad}
        if self._batched:
            value, error = self._evaluate_blocks(inputs, stage)
        else:
            if stage == 0:
                self.dispatcher.set_time(self.time + self.dt, self.dt, step=self.steps)
            response = self.dispatcher.evaluate(inputs, point_ids=self.patch_ids)
            value = response.value
            error = response.standard_error
            if error is None:
                error = np.zeros_like(value)
        self.evaluations += 1
        self.micro_seconds += _time.perf_counter() - start
        self.rate.x.array[self._q_dofs] = value[:, 0]
        positive = u > 0
        self.per_capita_rate.x.array[self._q_dofs] = np.where(
            positive, value[:, 0] / np.where(positive, u, 1.0), 0.0
        )
        self.rate_error.x.array[self._q_dofs] = error[:, 0]
        d = self.dim
        self.flux.x.array.reshape(-1, d)[self._qv_dofs] = value[:, 1:]
        self.flux_error.x.array.reshape(-1, d)[self._qv_dofs] = error[:, 1:]
        for f in (self.rate, self.per_capita_rate, self.flux, self.rate_error, self.flux_error):
            f.x.scatter_forward()

    def _evaluate_blocks(self, inputs, stage: int):
        """Gather all patches, run rank-independent blocks, share the answers."""
        model = self.model
        states = np.asarray(model.micro_state(inputs, {}), dtype=float)
        if self.state_resolution > 0:
            states = np.round(states / self.state_resolution) * self.state_resolution
        comm = self.comm
        parts = (
            comm.allgather((self.patch_ids, states))
            if comm.size > 1
            else [(self.patch_ids, states)]
        )
        ids = np.concatenate([p[0] for p in parts])
        all_states = np.concatenate([p[1] for p in parts])
        order = np.argsort(ids, kind="stable")
        blocks = np.arange(0, len(ids), self.block_size)
        bounds = np.linspace(0, len(blocks), comm.size + 1).astype(int)
        results = []
        for b in range(bounds[comm.rank], bounds[comm.rank + 1]):
            pick = order[blocks[b] : blocks[b] + self.block_size]
            context = SolveContext(
                time=self.time + self.dt,
                dt=self.dt,
                step=self.steps,
                iteration=stage,
                point=b,
                seed=(int(model.seed), b, self.steps, stage),
            )
            solution = model.solve_batch(all_states[pick], context)
            results.append((pick, solution))
        shared = comm.allgather(results) if comm.size > 1 else [results]
        names = None
        gathered = {}
        for part in shared:
            for pick, solution in part:
                if names is None:
                    names = list(solution)
                    gathered = {
                        k: np.empty((len(ids), *np.shape(v)[1:])) for k, v in solution.items()
                    }
                for k in names:
                    gathered[k][pick] = solution[k]
        offset = comm.exscan(self.num_cells) if comm.size > 1 else 0
        mine = slice(int(offset or 0), int(offset or 0) + self.num_cells)
        solutions = {k: v[mine] for k, v in gathered.items()}
        response = model.respond(solutions, inputs, {})
        for name, array in (("value", response.value), ("error", response.standard_error)):
            if array is not None and not np.all(np.isfinite(array)):
                raise FloatingPointError(f"the micro model returned a non-finite {name}")
        error = response.standard_error
        return response.value, (np.zeros_like(response.value) if error is None else error)

    # -- time stepping ---------------------------------------------------------------------------
    def _rate_of_change(self, stage: int) -> np.ndarray:
        """``M_L^-1 (int J.grad v + R v)`` at the current ``u`` (owned dofs)."""
        self._evaluate(stage)
        start = _time.perf_counter()
        owned = self._owned
        b = self.patch_mesh.assemble(self._rhs)
        if self._growth is not None:
            b += self.patch_mesh.assemble(self._growth) * self.u.x.array[:owned]
        rate = b / self._lumped.array[:owned]
        self.macro_seconds += _time.perf_counter() - start
        return rate

    def step(self) -> None:
        """Advance one macro step (collective)."""
        owned = self._owned
        u0 = self.u.x.array[:owned].copy()
        k1 = self._rate_of_change(0)
        if self.scheme == "euler":
            self.u.x.array[:owned] = u0 + self.dt * k1
        else:
            self.u.x.array[:owned] = u0 + self.dt * k1
            self.u.x.scatter_forward()
            k2 = self._rate_of_change(1)
            self.u.x.array[:owned] = u0 + 0.5 * self.dt * (k1 + k2)
        self.u.x.scatter_forward()
        self.time += self.dt
        self.steps += 1

    def run(self, duration: float, callback=None) -> None:
        """Advance ``round(duration / dt)`` steps; ``callback(self)`` after each (optional)."""
        for _ in range(round(duration / self.dt)):
            self.step()
            if callback is not None:
                callback(self)

    def mass(self) -> float:
        """``int u dx`` over the domain (collective): the number of agents / capacity."""
        return self.patch_mesh.integral(self.u)
