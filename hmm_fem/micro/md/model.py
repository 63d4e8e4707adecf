"""The MD box as a micro model: the macro deformation in, the stress of the atoms out.

:class:`MDStressModel` imposes the macro deformation gradient ``F`` (finite strain) or the
small strain ``eps`` (``F = I + eps``) on a periodic box of atoms in LAMMPS and returns the
first Piola–Kirchhoff stress ``P`` (finite strain, for
:class:`~hmm_fem.macro.StaticElasticity` with ``displacement_gradient``) or the Voigt
Cauchy stress (small strain):

* **T = 0**: the atoms are placed on the deformed lattice and the energy is minimised in
  the fixed cell (CG to a force norm of ``force_tolerance``); the stress is the virial of
  the relaxed box. For a simple lattice this is the Cauchy–Born stress, to round-off.
  The model is deterministic.
* **T > 0**: velocities drawn at the temperature, Langevin thermostat, velocity Verlet;
  after an equilibration the pressure tensor is averaged over ``blocks`` blocks. The
  response is the mean of the blocks and its standard error is ``std / sqrt(blocks)`` of
  the block means (of the returned stress itself, so ``P`` and ``sigma`` each get their
  own). The model is stochastic: both seeds come from ``context.rng()``, a stream of
  (model seed, point, step, iteration), so a result is the same on any number of ranks.

The model has no analytic tangent: its derivatives are NaN (so that using them by mistake
fails loudly). Wrap it in :class:`~hmm_fem.micro.FiniteDifferenceTangent` (see
:meth:`MDStressModel.with_tangent`): at T = 0 the central differences are accurate to
about ``1e-9`` relative; at T > 0 the step grows with the noise (common random numbers
only partly cancel it, since MD trajectories decorrelate).

The box is built once per model on ``MPI.COMM_SELF`` and put into the state of each solve
from scratch (cell, positions, velocities), so a result does not depend on the solves
before it.

Failures (for a :class:`~hmm_fem.coupling.FailurePolicy`):

* **Timeout.** A solve whose context carries a ``timeout`` (the policy's) runs under
  LAMMPS's ``timer timeout`` (checked every 10 steps or CG iterations): a slow or stuck
  run stops itself at the limit and the solve raises
  :class:`~hmm_fem.micro.md.LammpsTimeout` (a :class:`TimeoutError`, counted as a timeout
  by the policy) instead of returning the stress of an unfinished run. The box is usable
  afterwards.
* **Remedy** ``"smaller_timestep"`` (T > 0 only): the retry runs with half the time step
  and twice the steps (equilibration, blocks, sampling interval), the same physical time,
  for a trajectory that blew up (lost atoms, a non-finite stress). It costs twice the
  plain solve.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np
from scipy.optimize import brentq

from ...voigt import strain_to_voigt, stress_to_voigt, voigt_size, voigt_to_strain
from ..protocol import MicroModel, MicroResponse, SolveContext
from ..tangents import FiniteDifferenceTangent
from .box import MAX_SEED, LammpsBox, LammpsError, LammpsTimeout

__all__ = ["MDStressModel"]


class MDStressModel(MicroModel):
    """Stress of a periodic box of atoms (LAMMPS) under the macro deformation.

    Example:
        >>> model = MDStressModel("fcc", lattice_constant=1.55, zero_pressure=True,
        ...                       pair_style="lj/cut 2.5", pair_coeff=["* * 1.0 1.0"])
        >>> fe2_model = model.with_tangent()          # central differences through the seam
        >>> problem = StaticElasticity(mesh, fe2_model, ..., state_tolerance=1e-10)

    Args:
        lattice: ``"fcc"`` (3D) or ``"hex"`` (2D triangular lattice, 2D MD).
        lattice_constant: FCC cube edge or hex nearest-neighbour distance in the reference
            configuration ``F = I``. Give it or ``density``.
        density: Atoms per unit volume (area in 2D) in the reference configuration.
        zero_pressure: Replace the lattice constant by the nearby one (within 10 %) at which
            the T = 0 pressure of the box vanishes, so that ``F = I`` is stress free at
            T = 0 (found with the box itself: a scalar root of its pressure).
        cells: Conventional cells along each axis (default: 2 per axis at T = 0, where a
            simple lattice needs no more; ``(4, 4, 4)`` = 256 atoms or ``(12, 7)`` = 168
            atoms at T > 0).
        pair_style: LAMMPS ``pair_style`` arguments (any style of the Debian build).
        pair_coeff: LAMMPS ``pair_coeff`` argument lines (a string or a sequence).
        pair_modify: LAMMPS ``pair_modify`` arguments: ``"shift yes"`` (default) lets CG
            converge with a truncated potential; ``"tail yes"`` adds the long-range
            correction of the pressure (for comparisons with the full LJ fluid).
        mass: Atom mass.
        kinematics: ``"finite"`` (input ``displacement_gradient`` ``H = F - I``, ``d x d``;
            response ``P``) or ``"small"`` (input Voigt ``strain`` with engineering shears,
            ``F = I + eps``; response the Voigt Cauchy stress).
        temperature: ``k_B T`` in LJ units; 0 for the relaxed lattice.
        timestep: MD time step.
        damping: Langevin damping time.
        equilibration: MD steps before averaging.
        blocks: Number of averaging blocks (at least 2).
        block_steps: MD steps per block.
        sample_every: Steps between pressure samples within a block.
        force_tolerance: T = 0: CG stop on the 2-norm of the global force vector.
        max_iterations: T = 0: most CG iterations.
        seed: The model's seed (first entry of every solve's random stream).

    Attributes:
        box: The :class:`~hmm_fem.micro.md.box.LammpsBox`.
        lattice_constant: The reference lattice constant in use.
        solves: Number of MD solves so far; ``md_seconds``: their wall time.

    Raises:
        ValueError: On inconsistent or invalid arguments.
        hmm_fem.micro.md.LammpsError: If LAMMPS refuses the set-up (an unknown pair
            style, wrong coefficients ...), with LAMMPS's message.
    """

    def __init__(
        self,
        lattice: str = "fcc",
        *,
        lattice_constant: float | None = None,
        density: float | None = None,
        zero_pressure: bool = False,
        cells: Sequence[int] | None = None,
        pair_style: str = "lj/cut 2.5",
        pair_coeff: str | Sequence[str] = ("* * 1.0 1.0",),
        pair_modify: str | None = "shift yes",
        mass: float = 1.0,
        kinematics: str = "finite",
        temperature: float = 0.0,
        timestep: float = 0.005,
        damping: float = 0.5,
        equilibration: int = 2000,
        blocks: int = 16,
        block_steps: int = 500,
        sample_every: int = 5,
        force_tolerance: float = 1e-10,
        max_iterations: int = 1000,
        seed: int = 0,
    ):
        if lattice not in ("fcc", "hex"):
            raise ValueError(f"unknown lattice {lattice!r}; use 'fcc' (3D) or 'hex' (2D)")
        d = 3 if lattice == "fcc" else 2
        if (lattice_constant is None) == (density is None):
            raise ValueError("give exactly one of lattice_constant and density")
        if density is not None:
            if not (np.isfinite(density) and density > 0):
                raise ValueError(f"density must be positive, got {density!r}")
            # atoms per conventional cell / cell volume in units of a^d
            lattice_constant = (
                (4.0 / density) ** (1.0 / 3.0)
                if d == 3
                else np.sqrt(2.0 / (np.sqrt(3.0) * density))
            )
        if kinematics not in ("finite", "small"):
            raise ValueError(f"kinematics must be 'finite' or 'small', got {kinematics!r}")
        if not (np.isfinite(temperature) and temperature >= 0):
            raise ValueError(f"temperature must be >= 0, got {temperature!r}")
        counts = {
            "timestep": timestep,
            "damping": damping,
            "force_tolerance": force_tolerance,
        }
        for name, value in counts.items():
            if not (np.isfinite(value) and value > 0):
                raise ValueError(f"{name} must be positive, got {value!r}")
        for name, value, low in (
            ("equilibration", equilibration, 0),
            ("blocks", blocks, 2),
            ("block_steps", block_steps, 1),
            ("sample_every", sample_every, 1),
            ("max_iterations", max_iterations, 1),
        ):
            if isinstance(value, bool) or int(value) != value or value < low:
                raise ValueError(f"{name} must be an integer >= {low}, got {value!r}")
        if block_steps % sample_every:
            raise ValueError(
                f"block_steps ({block_steps}) must be a multiple of sample_every ({sample_every})"
            )
        if cells is None:
            cells = (2,) * d if temperature == 0 else ((4, 4, 4) if d == 3 else (12, 7))
        self.dim = d
        self.kinematics = kinematics
        self.temperature = float(temperature)
        self.stochastic = self.temperature > 0
        self.seed = int(seed)
        self.run_options = {
            "temperature": self.temperature,
            "timestep": float(timestep),
            "damping": float(damping),
            "equilibration": int(equilibration),
            "blocks": int(blocks),
            "block_steps": int(block_steps),
            "sample_every": int(sample_every),
        }
        self.force_tolerance = float(force_tolerance)
        self.max_iterations = int(max_iterations)
        self.box = LammpsBox(
            lattice, float(lattice_constant), cells, pair_style, pair_coeff, pair_modify, mass
        )
        if zero_pressure:
            try:
                self._zero_pressure()
            except BaseException:
                self.box.close()
                raise
        self.lattice_constant = self.box.lattice_constant
        if kinematics == "finite":
            self.inputs = {"displacement_gradient": (d, d)}
            self.output_shape = (d, d)
            self.state_names = tuple(f"H{i}{j}" for i in range(d) for j in range(d))
        else:
            n = voigt_size(d)
            self.inputs = {"strain": (n,)}
            self.output_shape = (n,)
            self.state_names = tuple(f"eps[{k}]" for k in range(n))
        self.parameters = ()
        self.solves = 0
        self.md_seconds = 0.0
        self.remedies = ("smaller_timestep",) if self.temperature > 0 else ()

    # -- set-up ---------------------------------------------------------------------------
    def _zero_pressure(self) -> None:
        box = self.box
        d = self.dim

        def pressure(scale: float) -> float:
            box.deform(scale * np.eye(d))
            box.relax(self.force_tolerance, self.max_iterations)
            return float(-np.trace(box.cauchy_stress()) / d)

        lo, hi = 0.9, 1.1
        p_lo, p_hi = pressure(lo), pressure(hi)
        if p_lo * p_hi > 0:
            raise ValueError(
                f"zero_pressure: the T = 0 pressure does not change sign between 0.9 and 1.1 "
                f"times the lattice constant {box.lattice_constant} (P = {p_lo:.4g}, "
                f"{p_hi:.4g}); give a closer lattice_constant"
            )
        scale = brentq(pressure, lo, hi, xtol=1e-15, rtol=4 * np.finfo(float).eps)
        a = box.lattice_constant * scale
        box.lattice_constant = a
        box.reference_cell = box.reference_cell * scale

    def with_tangent(self, **options) -> FiniteDifferenceTangent:
        """This model wrapped in :class:`~hmm_fem.micro.FiniteDifferenceTangent` (central).

        At T > 0 the default ``scale`` of the input is ``0.01`` (a typical strain): the
        wrapper's step is ``eta^(1/3) * max(|x|, scale)`` with ``eta`` the relative
        standard error of the stress, which is large near a stress-free state, and a scale
        of 1 would then give steps of tens of per cent. With common random numbers (the
        perturbed runs start from the same velocities and thermostat seeds) the noise of
        the differences is small: at T* = 0.01 the constants of a 32-atom FCC box come out
        within 0.5 % of the T = 0 Born constants from 8 x 100 steps per run.

        Args:
            **options: Passed to :class:`~hmm_fem.micro.FiniteDifferenceTangent`.
        """
        if self.temperature > 0 and "scale" not in options and "step" not in options:
            options["scale"] = {next(iter(self.inputs)): 0.01}
        return FiniteDifferenceTangent(self, **options)

    def close(self) -> None:
        """Free the LAMMPS instance."""
        self.box.close()

    # -- the protocol ---------------------------------------------------------------------
    def deformation_gradient(self, state: np.ndarray) -> np.ndarray:
        """``F`` of a state row (``I + H`` or ``I + eps``)."""
        d = self.dim
        state = np.asarray(state, dtype=np.float64)
        if self.kinematics == "finite":
            return np.eye(d) + state.reshape(d, d)
        return np.eye(d) + voigt_to_strain(state)

    def micro_state(self, inputs: Mapping[str, np.ndarray], parameters=None) -> np.ndarray:
        """``H`` flattened (finite strain) or the Voigt strain (small strain), ``(n, s)``."""
        name = next(iter(self.inputs))
        x = np.asarray(inputs[name], dtype=np.float64)
        return x.reshape(x.shape[0], -1)

    def _output(self, sigma: np.ndarray, F: np.ndarray) -> np.ndarray:
        """The response of Cauchy stresses ``(..., d, d)``: ``P = J sigma F^-T`` or Voigt."""
        if self.kinematics == "finite":
            return np.linalg.det(F) * sigma @ np.linalg.inv(F).T
        return stress_to_voigt(sigma)

    def solve(self, state: np.ndarray, context: SolveContext) -> dict[str, np.ndarray]:
        """One MD solve: the stress of the box deformed by the state's ``F``.

        ``context.timeout`` (seconds) limits the LAMMPS runs; ``context.remedy``
        ``"smaller_timestep"`` halves the time step (see the module docstring).

        Raises:
            ValueError: If ``F`` is not finite, singular or inverts the box (``det F <= 0``),
                or for a remedy the model does not offer.
            hmm_fem.micro.md.LammpsTimeout: If a run stopped at ``context.timeout``.
            hmm_fem.micro.md.LammpsError: If LAMMPS fails (message passed on).
        """
        import time

        start = time.perf_counter()
        remedy = getattr(context, "remedy", None)
        if remedy is not None and remedy not in self.remedies:
            raise ValueError(
                f"MDStressModel (T = {self.temperature:g}) offers the remedies "
                f"{list(self.remedies)}, not {remedy!r}"
            )
        F = self.deformation_gradient(state)
        box = self.box
        box.deform(F)
        timeout = getattr(context, "timeout", None)
        if timeout is not None:
            box.set_timeout(timeout)
        try:
            out = self._run(F, context, remedy)
        except LammpsError as error:
            if not isinstance(error, LammpsTimeout):
                # e.g. atoms lost by a trajectory that blew up: LAMMPS cannot go on with
                # this instance, so the next solve (a retry with a remedy) gets a new one.
                box.rebuild()
            raise
        finally:
            if timeout is not None and box.lmp is not None and box.timeout is not None:
                box.set_timeout(None)
        self.solves += 1
        self.md_seconds += time.perf_counter() - start
        return out

    def _run(self, F: np.ndarray, context: SolveContext, remedy: str | None) -> dict:
        """The relaxation (T = 0) or the thermostatted run (T > 0) of the deformed box."""
        box = self.box
        if self.temperature == 0:
            iterations = box.relax(self.force_tolerance, self.max_iterations)
            sigma = box.cauchy_stress()
            value = self._output(sigma, F)
            out = {
                "value": value,
                "pressure": np.array(-np.trace(sigma) / self.dim),
                "iterations": np.array(float(iterations)),
                "max_force": np.array(box.max_force()),
            }
        else:
            seeds = context.rng().integers(1, MAX_SEED, size=2)
            options = dict(self.run_options)
            if remedy == "smaller_timestep":
                options["timestep"] /= 2.0
                for name in ("equilibration", "block_steps", "sample_every"):
                    options[name] *= 2
            blocks = box.thermostatted_run(seeds=(int(seeds[0]), int(seeds[1])), **options)
            Q = box.rotation
            sigmas = -np.einsum("ai,kij,bj->kab", Q, blocks, Q)
            values = self._output(sigmas, F)
            pressures = -np.trace(sigmas, axis1=1, axis2=2) / self.dim
            m = len(blocks)
            out = {
                "value": values.mean(axis=0),
                "standard_error": values.std(axis=0, ddof=1) / np.sqrt(m),
                "pressure": np.array(pressures.mean()),
                "pressure_standard_error": np.array(pressures.std(ddof=1) / np.sqrt(m)),
            }
        return out

    def respond(self, solutions, inputs, parameters=None) -> MicroResponse:
        """The stress at every point; NaN tangents (wrap in a finite-difference tangent)."""
        value = np.asarray(solutions["value"], dtype=np.float64)
        n = value.shape[0]
        name, shape = next(iter(self.inputs.items()))
        tangent = np.full((n, *self.output_shape, *shape), np.nan)
        error = solutions.get("standard_error") if self.stochastic else None
        return MicroResponse(
            value=value,
            derivatives={name: tangent},
            solutions=dict(solutions),
            standard_error=None if error is None else np.asarray(error, dtype=np.float64),
        )

    # -- helpers for checks ---------------------------------------------------------------
    def strain_voigt(self, H: np.ndarray) -> np.ndarray:
        """The Voigt small strain of a displacement gradient (for comparisons)."""
        H = np.asarray(H, dtype=np.float64)
        return strain_to_voigt(0.5 * (H + np.swapaxes(H, -1, -2)))
