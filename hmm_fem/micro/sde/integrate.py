"""Macro integrators of the slow variable with HMM-estimated drift and diffusion.

:func:`hmm_integrate` advances the slow state ``X`` over macro steps ``h``; at every step
the drift (and the diffusion) is estimated by a burst of the fast process with ``X``
frozen (:class:`~hmm_fem.micro.sde.FastSlowEstimator`):

* ``"euler"``: ``X_{n+1} = X_n + h F_hat(X_n, t_n)`` (deterministic limit);
* ``"heun"``: the explicit trapezoidal rule (second order): ``X* = X_n + h F_hat(X_n,
  t_n)``, ``X_{n+1} = X_n + h/2 (F_hat(X_n, t_n) + F_hat(X*, t_{n+1}))``; two drift bursts
  per step (on independent random numbers), for a macro bias ``O(h^2)`` instead of ``O(h)``;
* ``"implicit_euler"``: ``X_{n+1} = X_n + h F_hat(X_{n+1}, t_{n+1})``, solved by Newton's
  method on the *estimated* drift. All bursts of a step use the same key and the same
  start states (common random numbers), so ``F_hat`` is one fixed, smooth function of the
  state within the step (for a smooth fast process) and Newton converges on it as on a
  deterministic equation. The Jacobian is a forward difference of ``F_hat`` with the same
  random numbers (:meth:`~hmm_fem.micro.sde.FastSlowEstimator.jacobian`), taken at the
  start ``X_n`` (so the first iterate is the linearly implicit Euler step, stable for stiff
  drifts) and again whenever the residual shrinks by less than half (chord Newton);
  iterations stop when the residual ``|X - X_n - h F_hat(X)|`` is below ``newton_tol``
  (default: ``1e-3 h`` times the drift's standard error, negligible next to the noise);
* ``"euler_maruyama"``: ``X_{n+1} = X_n + h b_hat + sqrt(2 D_hat h) xi_n`` with drift and
  diffusion from :meth:`~hmm_fem.micro.sde.FastSlowEstimator.diffusion` (stochastic limit),
  ``xi_n`` from the estimator's macro stream (the same on every rank). A diffusion estimate
  that is not positive semi-definite (noise) has its negative eigenvalues set to zero; the
  report counts it.

**Error bars of a deterministic limit.** The HMM state is random through the drift
estimates. Linearising about the exact trajectory of the same scheme, the deviation obeys
``d_{n+1} = A_n d_n + h e_n`` with ``e_n`` the estimation error of step ``n`` (covariance
``S_n`` from the replicas) and ``J`` the estimated Jacobian (common random numbers), so its
covariance is propagated along, ``P_{n+1} = A P A^T + h^2 S_n``: explicit Euler
``A = I + h J(X_n)``; Heun ``A = I + h J + h^2 J^2 / 2`` with ``J`` at ``X_n``, the two
independent estimates entering as ``h/2 ((I + h J) e_1 + e_2)``; implicit Euler
``d_{n+1} = B (d_n + h e_{n+1})``, ``B = (I - h J)^{-1}`` with ``J`` at ``X_{n+1}`` (the
first Newton Jacobian of the next step, so only the last step needs an extra one).
:attr:`HMMSolution.standard_error` is its square root: it covers the statistical error,
not the bias of the macro scheme (``O(h)``, ``O(h^2)`` for Heun) or of the micro solver
and burn-in, which the user bounds (:func:`~hmm_fem.micro.sde.plan_burst` for the
burn-in). With ``"euler"`` and ``"heun"`` the propagation costs one extra burst per slow
component and step (``propagate_error=False`` saves it); ``"implicit_euler"`` has the
Jacobian anyway. The replicas' estimates of a skewed ``f`` (``-Y^3``) have heavier tails
than the normal with few effective samples per estimate: use enough replicas times
window (a few hundred correlation times per estimate) for the band's quantiles to hold.

With ``tolerance=...`` the burst is first planned at ``x0`` (:func:`plan_burst`), its
burn-in long enough for the warm starts too.
:class:`HMMReport` gives the fast steps spent against a direct simulation of the full
system over the same time with the same micro step.
"""

from __future__ import annotations

import math
import time as _time
import warnings
from dataclasses import dataclass

import numpy as np

from .control import BurstPlan, plan_burst, plan_warm_starts
from .estimator import FastSlowEstimator

__all__ = ["HMMReport", "HMMSolution", "hmm_integrate"]

METHODS = ("euler", "heun", "implicit_euler", "euler_maruyama")


@dataclass(frozen=True)
class HMMReport:
    """The cost of an HMM integration.

    Attributes:
        method: The macro scheme.
        steps: Macro steps taken.
        bursts: Bursts run (drift, Jacobian and Newton evaluations, pilot included).
        fast_steps: Fast steps spent (all replicas; pilot included).
        direct_fast_steps: Micro steps of one direct simulation of the full system over the
            same time with the same micro step ``dt`` (a lower bound on its cost: one path,
            and the slow equation's own steps come on top).
        newton_iterations: Newton iterations over all steps (implicit Euler).
        jacobians: Finite-difference Jacobians computed.
        unconverged_steps: Implicit steps whose Newton iteration stopped at
            ``max_newton`` (warned).
        clipped_diffusions: Steps whose diffusion estimate had negative eigenvalues set
            to zero (warned).
        wall_time: Seconds spent.
        plan: The burst plan if a tolerance was given.
    """

    method: str
    steps: int
    bursts: int
    fast_steps: int
    direct_fast_steps: int
    newton_iterations: int
    jacobians: int
    unconverged_steps: int
    clipped_diffusions: int
    wall_time: float
    plan: BurstPlan | None = None

    @property
    def saving(self) -> float:
        """``direct_fast_steps / fast_steps``."""
        return self.direct_fast_steps / max(self.fast_steps, 1)

    def __str__(self) -> str:
        text = (
            f"{self.method}: {self.steps} macro steps, {self.bursts} bursts, "
            f"{self.fast_steps} fast steps against {self.direct_fast_steps} for a direct "
            f"simulation ({self.saving:.3g}x), {self.wall_time:.2f} s"
        )
        if self.method == "implicit_euler":
            text += f"; {self.newton_iterations} Newton iterations, {self.jacobians} Jacobians"
        if self.unconverged_steps:
            text += f"; {self.unconverged_steps} Newton iterations not converged"
        if self.clipped_diffusions:
            text += f"; {self.clipped_diffusions} diffusion estimates clipped"
        return text


@dataclass(frozen=True)
class HMMSolution:
    """The slow trajectory of :func:`hmm_integrate`.

    Attributes:
        times: Macro times, shape ``(N,)``.
        states: Slow states, shape ``(N, m)``.
        covariance: Propagated covariance of the states' statistical error,
            ``(N, m, m)`` (``nan`` for ``euler_maruyama`` or ``propagate_error=False``).
        drifts: The drift used by each step, ``(N - 1, m)``.
        drift_errors: Its standard error, ``(N - 1, m)``.
        diffusions: The diffusion used by each step, ``(N - 1, m, m)``
            (``euler_maruyama`` only, else ``None``).
        report: The :class:`HMMReport`.
    """

    times: np.ndarray
    states: np.ndarray
    covariance: np.ndarray
    drifts: np.ndarray
    drift_errors: np.ndarray
    diffusions: np.ndarray | None
    report: HMMReport

    @property
    def standard_error(self) -> np.ndarray:
        """Standard error of every state component, ``(N, m)``."""
        return np.sqrt(np.diagonal(self.covariance, axis1=1, axis2=2))

    def interval(self, confidence: float = 0.95) -> tuple[np.ndarray, np.ndarray]:
        """Pointwise confidence band ``(low, high)`` of the states (normal quantile).

        The propagated variance sums many steps' replica variances, so its own error is
        small and the normal quantile applies.
        """
        from .estimator import student_quantile

        half = student_quantile(confidence, math.inf) * self.standard_error
        return self.states - half, self.states + half

    def at(self, t: float) -> int:
        """Index of the macro time ``t`` (raises if it is not one of :attr:`times`)."""
        index = int(np.argmin(np.abs(self.times - t)))
        scale = max(1.0, abs(float(t)))
        if abs(self.times[index] - t) > 1e-9 * scale:
            raise ValueError(
                f"t = {t!r} is not a macro time of this solution; pass it in t_eval"
            )
        return index


def _grid(t0: float, t_end: float, dt: float, t_eval) -> np.ndarray:
    n = max(1, math.ceil((t_end - t0) / dt * (1 - 1e-9)))
    grid = [t0 + (t_end - t0) * k / n for k in range(n + 1)]
    if t_eval is not None:
        extra = np.asarray(t_eval, dtype=np.float64).reshape(-1)
        if np.any(extra < t0) or np.any(extra > t_end) or not np.all(np.isfinite(extra)):
            raise ValueError(f"t_eval must lie in [{t0}, {t_end}], got {extra}")
        grid = np.union1d(grid, extra)
    grid = np.asarray(grid, dtype=np.float64)
    # Merge times closer than a millionth of a step (round-off of the union).
    keep = np.concatenate([[True], np.diff(grid) > 1e-6 * dt])
    grid = grid[keep]
    grid[-1] = t_end
    return grid


def hmm_integrate(
    estimator: FastSlowEstimator,
    x0,
    t_span,
    *,
    dt: float,
    method: str = "euler",
    t_eval=None,
    propagate_error: bool = True,
    tolerance: float | None = None,
    confidence: float = 0.95,
    plan_options: dict | None = None,
    newton_tol: float | None = None,
    max_newton: int = 20,
) -> HMMSolution:
    """Integrate the slow variable with drifts (and diffusions) estimated on the fly.

    Example:
        The averaging example of :class:`FastSlowEstimator`::

            solution = hmm_integrate(estimator, [2.0], (0.0, 3.0), dt=0.01)
            low, high = solution.interval(0.95)
            print(solution.report)

    Args:
        estimator: The burst estimator (collective over its communicator).
        x0: Initial slow state, shape ``(m,)`` (a number for ``m = 1``).
        t_span: ``(t0, t_end)``.
        dt: Macro step (steps are equal, shortened only to hit ``t_eval``).
        method: ``"euler"``, ``"heun"``, ``"implicit_euler"`` or ``"euler_maruyama"``.
        t_eval: Extra times the grid must contain (e.g. output times).
        propagate_error: Whether to propagate the statistical error (deterministic
            methods; costs ``m`` bursts per step with ``"euler"`` and ``"heun"``).
        tolerance: If given, plan the burst at ``x0`` for this drift tolerance first
            (:func:`plan_burst`, at ``confidence``), with a burn-in that also covers the
            warm starts over all the steps (:func:`plan_warm_starts`, measured at ``x0``),
            and apply it to the estimator.
        confidence: Confidence level of ``tolerance``.
        plan_options: More keyword arguments of :func:`plan_burst` (``replicas``,
            ``pilot_time``, ...).
        newton_tol: Residual tolerance of the implicit Newton iteration.
        max_newton: Most Newton iterations per step.

    Returns:
        The :class:`HMMSolution`.

    Raises:
        ValueError: If an argument is invalid.
        FastSimulationError: If a burst fails.
    """
    if method not in METHODS:
        raise ValueError(f"method must be one of {METHODS}, got {method!r}")
    t0, t_end = (float(v) for v in t_span)
    dt = float(dt)
    if not (math.isfinite(dt) and dt > 0):
        raise ValueError(f"dt must be a positive macro step, got {dt!r}")
    if not (math.isfinite(t0) and math.isfinite(t_end) and t_end > t0):
        raise ValueError(f"t_span must be a finite (t0, t_end) with t_end > t0, got {t_span!r}")
    if isinstance(max_newton, bool) or int(max_newton) != max_newton or max_newton < 1:
        raise ValueError(f"max_newton must be a positive integer, got {max_newton!r}")
    x = np.array(x0, dtype=np.float64).reshape(-1)
    if x.size == 0 or not np.all(np.isfinite(x)):
        raise ValueError(f"x0 must be a non-empty finite slow state, got {x0!r}")
    if method != "euler_maruyama" and estimator.slow_drift is None:
        raise ValueError(f"method {method!r} needs the estimator's slow_drift")
    m = x.size
    start = _time.perf_counter()
    start_cost, start_bursts = estimator.fast_steps, estimator.bursts
    plan = None
    if tolerance is not None:
        plan = plan_burst(
            estimator, x, t0, tolerance=tolerance, confidence=confidence, **(plan_options or {})
        )
        estimator.configure(**plan.settings)
        if estimator.warm_start and method != "euler_maruyama":
            steps = len(_grid(t0, t_end, dt, t_eval)) - 1
            plan = plan_warm_starts(
                estimator, plan, x, t0, macro_step=min(dt, t_end - t0), steps=steps
            )
            estimator.configure(**plan.settings)
    times = _grid(t0, t_end, dt, t_eval)
    steps = len(times) - 1
    states = np.empty((steps + 1, m))
    states[0] = x
    track = propagate_error and method != "euler_maruyama"
    covariance = np.full((steps + 1, m, m), np.nan)
    if track:
        covariance[0] = 0.0
    P = np.zeros((m, m))
    drifts = np.empty((steps, m))
    drift_errors = np.empty((steps, m))
    diffusions = np.empty((steps, m, m)) if method == "euler_maruyama" else None
    counts = {"newton": 0, "jacobians": 0, "unconverged": 0, "clipped": 0}
    identity = np.eye(m)
    pending = None  # implicit Euler: (h, drift covariance) of the step awaiting its Jacobian
    for n in range(steps):
        t, h = times[n], times[n + 1] - times[n]
        key = (n,)
        if method == "euler":
            estimate = estimator.drift(x, t, key=key)
            if track:
                J = estimator.jacobian(x, t, key=key, base=estimate).value
                counts["jacobians"] += 1
                A = identity + h * J
                P = A @ P @ A.T + h * h * estimate.covariance
            estimator.commit(estimate)
            x = x + h * estimate.value
        elif method == "heun":
            first = estimator.drift(x, t, key=key)
            if track:
                J = estimator.jacobian(x, t, key=key, base=first).value
                counts["jacobians"] += 1
            # Independent numbers for the corrector: the two errors average out.
            second = estimator.drift(x + h * first.value, times[n + 1], key=(n, 1))
            if track:
                A = identity + h * J + 0.5 * h * h * (J @ J)
                C = identity + h * J
                noise = C @ first.covariance @ C.T + second.covariance
                P = A @ P @ A.T + 0.25 * h * h * noise
            estimator.commit(second)
            estimate = _combined(first, second)
            x = x + h * estimate.value
        elif method == "implicit_euler":
            x_new, estimate, J_start = _newton(
                estimator, x, times[n + 1], h, key, newton_tol, int(max_newton), counts
            )
            estimator.commit(estimate)
            if track and pending is not None:
                # The previous step's propagation needs J at its solution X_n: Newton's
                # first Jacobian of this step is exactly that (at t_{n+1}, an O(h) shift).
                P = _implicit_covariance(P, J_start, *pending)
                covariance[n] = P
            pending = (h, estimate.covariance)
            x = x_new
        else:
            stats = estimator.diffusion(x, t, key=key)
            estimate = stats.drift
            if estimate.value.shape != (m,):
                raise ValueError(
                    f"euler_maruyama: the slow increment has {estimate.value.size} components "
                    f"but the slow state has {m}; the observable must have the slow state's size"
                )
            D = 0.5 * (stats.diffusion.value + stats.diffusion.value.T)
            w, V = np.linalg.eigh(D)
            if np.any(w < 0):
                counts["clipped"] += 1
                w = np.maximum(w, 0.0)
            root = (V * np.sqrt(2 * w)) @ V.T
            xi = estimator.macro_rng(n).standard_normal(m)
            estimator.commit(stats)
            diffusions[n] = D
            x = x + h * estimate.value + math.sqrt(h) * root @ xi
        if not np.all(np.isfinite(x)):
            raise FloatingPointError(
                f"{method}: the slow state became non-finite at t = {times[n + 1]:.10g} "
                f"(step {n}); the macro step {h:g} is too large for this scheme (try "
                "implicit_euler) or the drift estimate blew up"
            )
        drifts[n] = estimate.value
        drift_errors[n] = estimate.standard_error
        states[n + 1] = x
        if track and method != "implicit_euler":
            covariance[n + 1] = P
    if track and method == "implicit_euler":
        # The last step's Jacobian at its solution: m more bursts.
        J_end = estimator.jacobian(x, times[-1], key=(steps,)).value
        counts["jacobians"] += 1
        covariance[steps] = _implicit_covariance(P, J_end, *pending)
    if counts["unconverged"]:
        warnings.warn(
            f"implicit_euler: Newton did not reach newton_tol within {max_newton} iterations "
            f"at {counts['unconverged']} of {steps} steps (the last iterate was used); raise "
            "max_newton or newton_tol, or check that the fast process is a smooth function of "
            "x with common random numbers",
            RuntimeWarning,
            stacklevel=2,
        )
    if counts["clipped"]:
        warnings.warn(
            f"euler_maruyama: {counts['clipped']} of {steps} diffusion estimates had negative "
            "eigenvalues (noise), set to zero; use more replicas or a longer window",
            RuntimeWarning,
            stacklevel=2,
        )
    report = HMMReport(
        method=method,
        steps=steps,
        bursts=estimator.bursts - start_bursts,
        fast_steps=estimator.fast_steps - start_cost,
        direct_fast_steps=estimator.steps_in(t_end - t0),
        newton_iterations=counts["newton"],
        jacobians=counts["jacobians"],
        unconverged_steps=counts["unconverged"],
        clipped_diffusions=counts["clipped"],
        wall_time=_time.perf_counter() - start,
        plan=plan,
    )
    return HMMSolution(times, states, covariance, drifts, drift_errors, diffusions, report)


def _combined(first, second):
    """The mean of two drift estimates (Heun's slope), errors as independent estimates."""
    from .estimator import Estimate

    values = 0.5 * (first.replica_values + second.replica_values)
    error = 0.5 * np.sqrt(first.standard_error**2 + second.standard_error**2)
    return Estimate(
        0.5 * (first.value + second.value), error, values, first.x, first.time,
        first.fast_steps + second.fast_steps,
    )


def _implicit_covariance(P, J, h, drift_covariance):
    """``B (P + h^2 S) B^T`` with ``B = (I - h J)^{-1}`` (one implicit Euler step)."""
    B = np.linalg.inv(np.eye(len(J)) - h * J)
    return B @ (P + h * h * drift_covariance) @ B.T


def _newton(estimator, x, t_new, h, key, newton_tol, max_newton, counts):
    """Solve ``z = x + h F_hat(z, t_new)`` with common random numbers (chord Newton)."""
    identity = np.eye(x.size)
    z = x.copy()
    jacobian = estimator.jacobian(z, t_new, key=key)
    J, estimate = jacobian.value, jacobian.base
    J_start = J
    counts["jacobians"] += 1
    residual = z - x - h * estimate.value
    tol = newton_tol
    if tol is None:
        tol = max(1e-3 * h * float(estimate.standard_error.max()), 1e-12 * (1 + np.abs(x).max()))
    norm = float(np.abs(residual).max())
    for _ in range(max_newton):
        if norm <= tol:
            return z, estimate, J_start
        z = z - np.linalg.solve(identity - h * J, residual)
        counts["newton"] += 1
        estimate = estimator.drift(z, t_new, key=key)
        new_residual = z - x - h * estimate.value
        new_norm = float(np.abs(new_residual).max())
        if new_norm > 0.5 * norm and new_norm > tol:
            J = estimator.jacobian(z, t_new, key=key, base=estimate).value
            counts["jacobians"] += 1
        residual, norm = new_residual, new_norm
    if norm > tol:
        counts["unconverged"] += 1
    return z, estimate, J_start
