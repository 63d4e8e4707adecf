"""Vacancy-mediated ion hopping: kinetic Monte Carlo of a solid electrolyte's conductivity.

Model. A periodic ``Lx x Ly`` square lattice (spacing ``a``; the planes are stacked at
spacing ``a``, so a site occupies ``a^3``) holds ``N`` ions on ``M`` sites; the others are
vacancies. An ion hops to a vacant nearest neighbour at the Arrhenius rate

    ``nu0 exp(-(E_a + J n -+ q E a / 2) / k_B T)``

with ``E`` a bias field along ``+x`` (``-`` for a hop along ``+x``, ``+`` against it,
neither across), ``n`` the number of ions around the hopping one and ``J`` a
nearest-neighbour bond energy (``J > 0``: attraction; ``J = 0``: the non-interacting lattice
gas with exclusion). The rates obey detailed balance with the energy ``-J`` per ion-ion
bond. In units of ``Gamma0 = nu0 exp(-E_a / k_B T)`` they depend on the reduced bias
``u = q E a / (2 k_B T)`` and the reduced bond ``K = J / (k_B T)`` only, so the simulator
:class:`IonHopping` runs in those units and :func:`ion_conductivity` converts.

Transport, per lattice (replica), in reduced units (lengths in ``a``, time in ``1/Gamma0``):

* the **drift**: the net hop rate along x, from the time integral of the *expected* net hop
  rate (``sum_c (+-) rate_c n_c`` between events; less noisy than counting hops, which is
  kept as a check), gives the reduced conductivity ``s = j_x / (2 u M)`` and
  ``sigma = e q^2 Gamma0 s / (a k_B T)`` (``k_B T`` in eV, ``sigma`` in S/m);
* the **collective** mean-square displacement of all ions together, ``<dX^2>/(2 dt M)``
  over blocks at zero bias: the same ``s`` by Nernst-Einstein (linear response);
* the **tracer** mean-square displacement ``sum_i |R_i|^2 / (4 N t)``: ``D* = a^2 Gamma0 d*``;
  divided by the hops per ion it gives the correlation factor ``f``.

Exact limits the tests use (derived in ``tests/test_ion_hopping.py``): for ``J = 0`` on the
torus, with the ``N`` ions placed uniformly at random (the stationary law at any bias),
``j_x = 2 sinh(u) N (M - N) / (M - 1)`` for every ``u``, and the collective
``<dX^2> = 2 t N (M - N) / (M - 1)``; the tracer with one vacancy carries the correlation
factor ``f = 1 / (pi - 1) = 0.46694`` of the square lattice (Compaan & Haven, Trans.
Faraday Soc. 52, 786, 1956).

:class:`IonConductivityModel` is the micro model: state the temperature, response
``sigma`` with its standard error.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np

from ..protocol import MicroModel, MicroResponse, SolveContext

try:
    from . import _ion_kernels as _k
except ImportError as exc:  # pragma: no cover - the environment has numba
    raise ImportError(
        "hmm_fem.micro.kmc needs numba (compiled KMC kernels): install Debian's "
        "python3-numba (docker/packages.txt) or `pip install numba`"
    ) from exc

__all__ = [
    "BOLTZMANN_EV",
    "ELEMENTARY_CHARGE",
    "SQUARE_LATTICE_CORRELATION_FACTOR",
    "IonHopping",
    "HoppingMaterial",
    "TransportEstimate",
    "measure_transport",
    "ion_conductivity",
    "IonConductivityModel",
    "arrhenius_fit",
]

#: Boltzmann constant in eV/K (CODATA 2018, exact).
BOLTZMANN_EV = 8.617333262e-5
#: Elementary charge in C (exact).
ELEMENTARY_CHARGE = 1.602176634e-19
#: Tracer correlation factor of vacancy diffusion on the square lattice, ``1/(pi - 1)``
#: (Compaan & Haven, Trans. Faraday Soc. 52, 786, 1956; 54, 1498, 1958).
SQUARE_LATTICE_CORRELATION_FACTOR = 1.0 / (math.pi - 1.0)


def _streams(entropy, count: int) -> np.ndarray:
    """xoshiro256+ states ``(count, 4)``: stream ``r`` from ``SeedSequence([*entropy, r])``."""
    states = np.empty((count, 4), dtype=np.uint64)
    for r in range(count):
        states[r] = np.random.SeedSequence([*entropy, r]).generate_state(4, np.uint64)
        if not states[r].any():  # pragma: no cover - probability 2**-256
            states[r, 0] = 1
    return states


class IonHopping:
    """Independent periodic square lattices of hopping ions, advanced by one compiled call.

    Example:
        >>> sim = IonHopping((32, 32), ions=512, replicas=8, bias=0.05, seed=1)
        >>> sim.run(until=200.0)        # time in units of 1 / Gamma0
        >>> sim.flux[:, 0] / sim.tau    # expected net hop rate along x, per lattice

    Args:
        shape: ``(Lx, Ly)``, each at least 3 (so that the four neighbours are distinct).
        ions: Number of ions per lattice (``1 <= ions < Lx Ly``), or a fraction in
            ``(0, 1)`` of the sites (rounded).
        replicas: Number of independent lattices ``B``.
        bias: Reduced bias ``u = q E a / (2 k_B T)`` along ``+x``.
        interaction: Reduced bond energy ``K = J / (k_B T)``.
        seed: Entropy of the random streams: an integer or a sequence of non-negative
            integers; lattice ``r`` draws from ``SeedSequence([*seed, r])`` (its initial
            placement and its hops), whatever the number of lattices or ranks.
        placement: Initial ``(B, M)`` occupations (0/1) instead of a uniformly random
            placement (which is the stationary law when ``interaction == 0``).

    Raises:
        ValueError: On a bad shape, ion number, bias, interaction or placement.
    """

    def __init__(
        self,
        shape=(32, 32),
        ions=0.5,
        *,
        replicas: int = 8,
        bias: float = 0.0,
        interaction: float = 0.0,
        seed=0,
        placement: np.ndarray | None = None,
    ):
        try:
            Lx, Ly = (int(v) for v in shape)
        except (TypeError, ValueError):
            raise ValueError(f"IonHopping: shape must be (Lx, Ly), got {shape!r}") from None
        if Lx < 3 or Ly < 3:
            raise ValueError(f"IonHopping: each side must be at least 3 sites, got {shape!r}")
        M = Lx * Ly
        if isinstance(ions, float) and 0.0 < ions < 1.0:
            ions = round(ions * M)
        if isinstance(ions, bool) or not isinstance(ions, (int, np.integer)) or not 1 <= ions < M:
            raise ValueError(
                f"IonHopping: ions must be an integer in [1, {M - 1}] or a fraction in (0, 1), "
                f"got {ions!r}"
            )
        if int(replicas) < 1:
            raise ValueError(f"IonHopping: replicas must be >= 1, got {replicas!r}")
        self.shape = (Lx, Ly)
        self.sites = M
        self.ions = int(ions)
        self.replicas = B = int(replicas)
        seeds = seed if isinstance(seed, (tuple, list)) else (seed,)
        self.entropy = tuple(int(s) for s in seeds)
        if any(s < 0 for s in self.entropy):
            raise ValueError(f"IonHopping: seeds must be non-negative, got {seed!r}")
        x, y = np.meshgrid(np.arange(Lx), np.arange(Ly), indexing="ij")
        x, y = x.T.reshape(-1), y.T.reshape(-1)  # site s = x + Lx y
        self.neighbours = np.stack(
            [
                (x + 1) % Lx + Lx * y,
                (x - 1) % Lx + Lx * y,
                x + Lx * ((y + 1) % Ly),
                x + Lx * ((y - 1) % Ly),
            ],
            axis=1,
        ).astype(np.int32)
        self._rng = _streams(self.entropy, B)
        if placement is None:
            occ = np.zeros((B, M), dtype=np.int8)
            for b in range(B):
                # The placement draws from the lattice's own stream family, not its hop stream.
                rng = np.random.default_rng([*self.entropy, b, 1])
                occ[b, rng.permutation(M)[: self.ions]] = 1
        else:
            occ = np.asarray(placement)
            if occ.shape != (B, M) or not np.isin(occ, (0, 1)).all():
                raise ValueError(f"IonHopping: placement must be (B, M) = ({B}, {M}) of 0 and 1")
            if not (occ.sum(axis=1) == self.ions).all():
                raise ValueError(f"IonHopping: every placement row must hold {self.ions} ions")
            occ = occ.astype(np.int8)
        self.occupation = np.ascontiguousarray(occ)
        self.ion_at = np.full((B, M), -1, dtype=np.int32)
        for b in range(B):
            self.ion_at[b, np.flatnonzero(occ[b])] = np.arange(self.ions, dtype=np.int32)
        self.displacement = np.zeros((B, self.ions, 2), dtype=np.int64)
        self.time = np.zeros(B)
        self.hops = np.zeros((B, 4), dtype=np.int64)
        self.flux = np.zeros((B, 2))
        self.tau = np.zeros(B)
        # Small integer types: fewer cache lines per hop on large lattices.
        self._cls = np.empty((B, M, 4), dtype=np.int8)
        self._pos = np.zeros((B, M, 4), dtype=np.int32)
        self._lst = np.zeros((B, _k.CLASSES, M), dtype=np.int32)
        self._cnt = np.zeros((B, _k.CLASSES), dtype=np.int64)
        _k.build(self.occupation, self.neighbours, self._cls, self._pos, self._lst, self._cnt)
        self.set_rates(bias, interaction)

    def set_rates(self, bias: float = 0.0, interaction: float = 0.0) -> None:
        """Set the reduced bias ``u`` and bond ``K`` (all lattices).

        Raises:
            ValueError: If either is not finite.
        """
        bias, interaction = float(bias), float(interaction)
        if not (math.isfinite(bias) and math.isfinite(interaction)):
            raise ValueError(
                f"IonHopping: bias and interaction must be finite, got {bias}, {interaction}"
            )
        self.bias, self.interaction = bias, interaction
        d, n = np.divmod(np.arange(_k.CLASSES), 4)
        field = np.where(d == 0, bias, np.where(d == 1, -bias, 0.0))
        self.rates = np.exp(field - interaction * n)

    def reset_counters(self) -> None:
        """Zero the displacements, hop counters, flux integrals and clocks (keeps the ions)."""
        self.displacement[:] = 0
        self.hops[:] = 0
        self.flux[:] = 0.0
        self.tau[:] = 0.0
        self.time[:] = 0.0

    def run(self, duration: float | None = None, *, until=None, max_events: int | None = None):
        """Advance every lattice by ``duration``, to ``until``, or by ``max_events`` hops.

        Returns:
            ``(B,)`` hops made per lattice.

        Raises:
            ValueError: If nothing bounds the run.
        """
        if until is None:
            until = np.full(self.replicas, np.inf) if duration is None else self.time + duration
        until = np.broadcast_to(np.asarray(until, dtype=np.float64), (self.replicas,)).copy()
        if not np.isfinite(until).all() and max_events is None:
            raise ValueError("IonHopping.run: give a duration, an end time or max_events")
        return _k.run(
            self.occupation, self.ion_at, self.displacement, self.neighbours, self._cls,
            self._pos, self._lst, self._cnt, self.rates, self._rng, self.time, until,
            -1 if max_events is None else int(max_events), self.hops, self.flux, self.tau,
        )

    def candidates(self) -> np.ndarray:
        """``(B, 16)`` number of possible hops per class ``4 d + n`` (read only)."""
        view = self._cnt.view()
        view.setflags(write=False)
        return view

    def total_rate(self) -> np.ndarray:
        """``(B,)`` total hop rate of every lattice in its present configuration."""
        return self._cnt @ self.rates


@dataclass(frozen=True)
class TransportEstimate:
    """Reduced transport coefficients of one measurement, with standard errors over replicas.

    Lengths in lattice spacings, times in ``1 / Gamma0`` (see :mod:`.ion_hopping`).

    Attributes:
        conductivity: Reduced conductivity from the drift, ``s = j_x / (2 u M)`` (expected
            net hop rate; ``nan`` at zero bias).
        conductivity_counted: The same from the counted hops (a noisier check).
        conductivity_collective: ``<(dX - <dX>)^2 + (dY - <dY>)^2> / (4 dt M)`` over blocks:
            the Nernst-Einstein estimate (linear response at zero bias).
        tracer: Tracer diffusivity ``d* = sum_i |R_i|^2 / (4 N t)`` (under a bias the
            displacements are taken relative to the replica's mean ion, which removes the
            drift and lowers ``d*`` by about ``1 / (f N)`` relative).
        correlation_factor: ``sum_i |R_i|^2 / (number of hops)`` (same displacements).
        standard_errors: Name -> standard error over the replicas (same names).
        replicas: Number of replicas.
        hops: Total hops in the measurement (all replicas).
    """

    conductivity: float
    conductivity_counted: float
    conductivity_collective: float
    tracer: float
    correlation_factor: float
    standard_errors: Mapping[str, float]
    replicas: int
    hops: int


def measure_transport(
    sim: IonHopping, duration: float, *, blocks: int = 20, burn_in: float = 0.0
) -> TransportEstimate:
    """Run ``sim`` and measure drift, collective and tracer transport.

    Args:
        sim: The simulator (its bias and interaction apply).
        duration: Measured time per replica (reduced units), in ``blocks`` equal blocks
            for the collective mean-square displacement.
        blocks: Number of blocks (at least 2).
        burn_in: Time run first and discarded (needed when ``interaction != 0``: the
            random placement is stationary only for the non-interacting gas).

    Raises:
        ValueError: On a non-positive duration or fewer than 2 blocks or replicas.
    """
    if not (duration > 0 and math.isfinite(duration)) or int(blocks) < 2:
        raise ValueError(
            f"measure_transport: need duration > 0 and blocks >= 2, got {duration}, {blocks}"
        )
    if sim.replicas < 2:
        raise ValueError("measure_transport: need at least 2 replicas for standard errors")
    if burn_in > 0:
        sim.run(burn_in)
    sim.reset_counters()
    B, M, N = sim.replicas, sim.sites, sim.ions
    step = duration / int(blocks)
    moved = np.empty((int(blocks), B, 2))
    previous = np.zeros((B, 2))
    for k in range(int(blocks)):
        sim.run(until=(k + 1) * step)
        total = sim.displacement.sum(axis=1).astype(np.float64)
        moved[k] = total - previous
        previous = total
    centred = moved - moved.mean(axis=(0, 1))
    R = sim.displacement.astype(np.float64)
    if sim.bias != 0.0:
        # Under a bias, tracer displacements relative to the replica's mean ion (the drift
        # taken out); at zero bias none is subtracted (it would bias d* by -1/(f N)).
        R = R - R.mean(axis=1, keepdims=True)
    squares = (R**2).sum(axis=(1, 2))
    per = {
        "conductivity_collective": (centred**2).sum(axis=2).mean(axis=0) / (4 * step * M),
        "tracer": squares / (4 * N * sim.time),
        "correlation_factor": squares / np.maximum(sim.hops.sum(axis=1), 1),
    }
    if sim.bias != 0.0:
        per["conductivity"] = sim.flux[:, 0] / sim.tau / (2 * sim.bias * M)
        per["conductivity_counted"] = (sim.hops[:, 0] - sim.hops[:, 1]) / sim.time / (
            2 * sim.bias * M
        )
    else:
        per["conductivity"] = per["conductivity_counted"] = np.full(B, np.nan)
    means = {k: float(v.mean()) for k, v in per.items()}
    errors = {k: float(v.std(ddof=1) / math.sqrt(B)) for k, v in per.items()}
    return TransportEstimate(**means, standard_errors=errors, replicas=B,
                             hops=int(sim.hops.sum()))


@dataclass(frozen=True)
class HoppingMaterial:
    """Physical parameters of the hopping ions.

    Attributes:
        activation_energy: Barrier ``E_a`` in eV.
        attempt_frequency: ``nu0`` in 1/s.
        spacing: Lattice spacing ``a`` in m.
        charge: Ion charge ``q`` in elementary charges.
        interaction: Nearest-neighbour bond energy ``J`` in eV (``> 0`` attractive).
        ion_fraction: Fraction of the sites holding an ion (``0 < c < 1``).
    """

    activation_energy: float = 0.3
    attempt_frequency: float = 1e13
    spacing: float = 3e-10
    charge: float = 1.0
    interaction: float = 0.0
    ion_fraction: float = 0.5

    def __post_init__(self):
        for name in ("activation_energy", "attempt_frequency", "spacing", "charge"):
            value = getattr(self, name)
            if not (math.isfinite(value) and value > 0):
                raise ValueError(f"HoppingMaterial: {name} must be positive, got {value!r}")
        if not math.isfinite(self.interaction):
            raise ValueError(
                f"HoppingMaterial: interaction must be finite, got {self.interaction!r}"
            )
        if not 0.0 < self.ion_fraction < 1.0:
            raise ValueError(
                f"HoppingMaterial: ion_fraction must be in (0, 1), got {self.ion_fraction!r}"
            )

    def hop_rate(self, temperature):
        """``Gamma0 = nu0 exp(-E_a / k_B T)`` in 1/s."""
        return self.attempt_frequency * np.exp(
            -self.activation_energy / (BOLTZMANN_EV * np.asarray(temperature, dtype=float))
        )

    def conductivity_unit(self, temperature):
        """``e q^2 Gamma0 / (a k_B T)`` in S/m: ``sigma`` per unit reduced conductivity."""
        T = np.asarray(temperature, dtype=float)
        return (
            ELEMENTARY_CHARGE * self.charge**2 * self.hop_rate(T)
            / (self.spacing * BOLTZMANN_EV * T)
        )

    def lattice_gas_conductivity(self, temperature):
        """``sigma`` of the non-interacting lattice gas, ``e q^2 Gamma0 c (1 - c) / (a k_B T)``.

        The exact infinite-lattice linear-response value for ``interaction == 0``.
        """
        c = self.ion_fraction
        return self.conductivity_unit(temperature) * c * (1 - c)

    def reduced_bias(self, field, temperature):
        """``u = q E a / (2 k_B T)`` for a field ``E`` in V/m."""
        return self.charge * field * self.spacing / (2 * BOLTZMANN_EV * temperature)


def ion_conductivity(
    material: HoppingMaterial,
    temperature: float,
    *,
    shape=(24, 24),
    bias: float = 0.05,
    duration: float = 50.0,
    replicas: int = 8,
    burn_in: float | None = None,
    seed=0,
) -> tuple[float, float]:
    """The ionic conductivity ``sigma`` (S/m) at ``temperature`` (K), with its standard error.

    From the drift under the reduced bias ``u = bias`` (linear response: the current's
    relative nonlinearity is about ``u^2 / 6``, 4e-4 at the default 0.05).

    Args:
        material: The :class:`HoppingMaterial`.
        temperature: In K.
        shape: Lattice shape.
        bias: Reduced bias ``u``.
        duration: Measured time per replica in units of ``1 / Gamma0``.
        replicas: Independent lattices (at least 2).
        burn_in: Time discarded first (default: none for ``J = 0``, ``duration / 4``
            otherwise).
        seed: Entropy of the streams (see :class:`IonHopping`).

    Returns:
        ``(sigma, standard_error)`` in S/m.
    """
    T = float(temperature)
    if not (math.isfinite(T) and T > 0):
        raise ValueError(f"ion_conductivity: the temperature must be positive (K), got {T!r}")
    if not (math.isfinite(bias) and bias > 0):
        raise ValueError(f"ion_conductivity: the reduced bias must be positive, got {bias!r}")
    K = material.interaction / (BOLTZMANN_EV * T)
    sim = IonHopping(shape, material.ion_fraction, replicas=replicas, bias=bias,
                     interaction=K, seed=seed)
    if burn_in is None:
        burn_in = 0.0 if K == 0 else duration / 4
    estimate = measure_transport(sim, duration, blocks=2, burn_in=burn_in)
    unit = float(material.conductivity_unit(T))
    return unit * estimate.conductivity, unit * estimate.standard_errors["conductivity"]


class IonConductivityModel(MicroModel):
    """Ionic conductivity ``sigma(T)`` from ion-hopping KMC, as a micro model.

    Input ``T`` (K) at a point; response ``sigma`` (S/m, output shape ``()``) with its
    standard error, and ``d sigma / dT`` from the single-barrier law
    ``sigma (E_a / (k_B T^2) - 1 / T)`` (the exact derivative of the expectation for
    ``J = 0``, where the temperature enters only through ``Gamma0 / T``; for ``J != 0`` an
    approximation, and Newton converges linearly).

    **Frozen noise.** Every solve draws from a stream seeded by ``(seed, the state's bits)``:
    the answer is a fixed function of the (rounded) temperature, the same on any number of
    ranks and in any order. So the model is not :attr:`stochastic` for the dispatcher,
    which then shares and caches solves by state (``state_tolerance``): nearby
    temperatures share one KMC run, across points, Newton iterates and time steps. The
    noise is still there, as a frozen realisation, and reported as
    :attr:`MicroResponse.standard_error`.

    Args:
        material: The :class:`HoppingMaterial`.
        shape, bias, duration, replicas, burn_in: As for :func:`ion_conductivity`.
        seed: Non-negative integer seed of the model.

    Attributes:
        solves: Number of KMC solves run by this process.
        hops: Number of hops simulated by this process.
    """

    inputs = {"T": ()}
    output_shape = ()
    state_names = ("T",)

    def __init__(
        self,
        material: HoppingMaterial,
        *,
        shape=(24, 24),
        bias: float = 0.05,
        duration: float = 50.0,
        replicas: int = 8,
        burn_in: float | None = None,
        seed: int = 0,
    ):
        if not isinstance(material, HoppingMaterial):
            raise TypeError(f"IonConductivityModel needs a HoppingMaterial, got {material!r}")
        if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or seed < 0:
            raise ValueError(f"IonConductivityModel: seed must be a non-negative integer: {seed!r}")
        self.material = material
        self.options = dict(shape=tuple(shape), bias=float(bias), duration=float(duration),
                            replicas=int(replicas), burn_in=burn_in)
        self.seed = int(seed)
        self.solves = 0
        self.hops = 0

    def micro_state(self, inputs, parameters):
        """The temperature, ``(n, 1)``."""
        return np.asarray(inputs["T"], dtype=np.float64).reshape(-1, 1)

    def solve(self, state: np.ndarray, context: SolveContext) -> dict[str, np.ndarray]:
        """One KMC measurement at ``T = state[0]``.

        Raises:
            ValueError: If the temperature is not positive.
        """
        T = float(state[0])
        if not (math.isfinite(T) and T > 0):
            raise ValueError(
                f"IonConductivityModel: the temperature must be positive (K), got {T!r}; "
                "is the macro temperature in kelvin?"
            )
        bits = int(np.float64(T).view(np.uint64))
        options = dict(self.options)
        sigma, error = ion_conductivity(self.material, T, seed=(self.seed, bits), **options)
        self.solves += 1
        Ea, k = self.material.activation_energy, BOLTZMANN_EV
        return {
            "sigma": np.float64(sigma),
            "standard_error": np.float64(error),
            "dsigma_dT": np.float64(sigma * (Ea / (k * T * T) - 1.0 / T)),
        }

    def respond(self, solutions, inputs, parameters) -> MicroResponse:
        """``sigma`` with its standard error and the single-barrier tangent."""
        return MicroResponse(
            np.asarray(solutions["sigma"], dtype=np.float64),
            {"T": np.asarray(solutions["dsigma_dT"], dtype=np.float64)},
            dict(solutions),
            standard_error=np.asarray(solutions["standard_error"], dtype=np.float64),
        )


def arrhenius_fit(temperature, sigma, standard_error=None):
    """Weighted least-squares fit of ``ln(sigma T) = ln A - E_a / (k_B T)``.

    Args:
        temperature: Temperatures in K, ``(n,)``, at least 2 distinct.
        sigma: Conductivities (positive), ``(n,)``.
        standard_error: Their standard errors (weights ``(sigma / se)^2``), or ``None``.

    Returns:
        ``(prefactor A, activation energy E_a in eV, 2x2 covariance of (ln A, E_a))``: so
        ``sigma(T) = A / T exp(-E_a / (k_B T))``. The covariance is that of the weighted fit
        (from the standard errors when given, from the residuals otherwise).

    Raises:
        ValueError: On mismatched shapes, non-positive values or fewer than 2 temperatures.
    """
    T = np.asarray(temperature, dtype=float).reshape(-1)
    s = np.asarray(sigma, dtype=float).reshape(-1)
    if T.shape != s.shape or len(np.unique(T)) < 2 or (T <= 0).any() or (s <= 0).any():
        raise ValueError("arrhenius_fit: need positive T and sigma of one shape, >= 2 temperatures")
    X = np.column_stack([np.ones_like(T), -1.0 / (BOLTZMANN_EV * T)])
    y = np.log(s * T)
    if standard_error is None:
        w = np.ones_like(T)
    else:
        se = np.asarray(standard_error, dtype=float).reshape(-1)
        w = (s / se) ** 2
    Xw = X * np.sqrt(w)[:, None]
    coef, *_ = np.linalg.lstsq(Xw, y * np.sqrt(w), rcond=None)
    cov = np.linalg.inv(Xw.T @ Xw)
    if standard_error is None:
        dof = max(len(T) - 2, 1)
        cov = cov * float(((y - X @ coef) ** 2).sum() / dof)
    return float(np.exp(coef[0])), float(coef[1]), cov
