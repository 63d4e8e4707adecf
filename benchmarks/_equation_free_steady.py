"""Benchmark piece: coarse Newton-Krylov against plain time integration to a steady state.

The micro simulator is a fine-scale heterogeneous Bratu problem,
``u_t = (a(x/eps) u_x)_x + lambda e^u`` on (0, 1), ``u = 0`` at the ends, in a laminate
(``a = 1`` and ``4`` on the two halves of every period, ``eps = 1/16``, 16 cells per layer):
conservative finite differences (exact for the laminate), backward Euler steps of
``dt = 0.01``, each a Newton solve with a tridiagonal Jacobian (``scipy.linalg.solve_banded``).
Its coarse state is the first 7 sine coefficients (discrete L2 projection); the lift is the
sine series followed by two constrained micro steps (the sine coefficients reset to ``U``
after each), which heals the laminate's microstructure. The coarse map is 10 micro steps
(horizon 0.1).

At ``lambda`` = 50, 90, 98, 99.5 and 99.9 % of the homogenised fold ``1.6 * 3.5138... =
5.62213`` (the fold of this simulator, located by continuation, is 5.62165: O(eps^2) below),
from the zero state, to the same tolerance ``|Phi_T(U) - U| <= 1e-8``:

  * coarse Newton-Krylov (:func:`hmm_fem.equation_free.coarse_steady_state`): Newton and
    GMRES iterations, map evaluations, micro steps, wall time;
  * plain integration: backward Euler steps of the fine problem until the coarse state
    changes by at most the tolerance over one horizon; micro steps, wall time.

Near the fold the slowest decay rate goes to zero (critical slowing down): integration
needs ever more steps while Newton-Krylov does not. Both answers are compared.

``measure()`` returns the figures; importing this module prints nothing. Run alone:
``docker/run python3 benchmarks/_equation_free_steady.py [--quick]``.
"""

import time

import numpy as np

EPS = 1 / 16
CELLS_PER_LAYER = 16
MODES = 7
DT, HORIZON, HEALING_STEPS = 0.01, 0.1, 2
TOL = 1e-8
A_LAYERS = (1.0, 4.0)
LAMBDA_C = 3.513830719125162  # Bratu constant: s tanh s = 1, lambda_c = 8 s^2 / cosh^2 s
FOLD = 2 / (1 / A_LAYERS[0] + 1 / A_LAYERS[1]) * LAMBDA_C


class _FineBratu:
    """Backward Euler steps of the fine problem (finite differences, Newton, banded LU)."""

    def __init__(self):
        cells = 2 * CELLS_PER_LAYER * round(1 / EPS)
        self.h = 1.0 / cells
        self.x = np.linspace(0.0, 1.0, cells + 1)
        centres = (np.arange(cells) + 0.5) * self.h
        self.a = np.where(np.mod(centres / EPS, 1.0) < 0.5, *A_LAYERS)  # per cell
        self.steps = 0

    def step(self, u, lam):
        """One backward Euler step from the nodal values ``u`` (ends at 0); NaN on failure."""
        from scipy.linalg import solve_banded

        h2, a = self.h**2, self.a
        old = u[1:-1]
        v = old.copy()
        self.steps += 1
        with np.errstate(over="ignore", invalid="ignore"):
            for _ in range(30):
                full = np.r_[0.0, v, 0.0]
                flux = a * np.diff(full) / h2
                residual = (v - old) / DT - np.diff(flux) - lam * np.exp(v)
                bands = np.zeros((3, v.size))
                bands[0, 1:] = -a[1:-1] / h2
                bands[1] = 1 / DT + (a[:-1] + a[1:]) / h2 - lam * np.exp(v)
                bands[2, :-1] = -a[1:-1] / h2
                if not np.all(np.isfinite(bands)) or not np.all(np.isfinite(residual)):
                    break
                update = solve_banded((1, 1), bands, residual)
                v -= update
                if np.max(np.abs(update)) <= 1e-13 * (1 + np.max(np.abs(v))):
                    return np.r_[0.0, v, 0.0]
        # A state one step cannot advance (far beyond the fold): NaN, which the coarse tools
        # report as a failed map evaluation.
        return np.full(u.shape, np.nan)


class _Coarse:
    """Sine coefficients <-> fine nodal values, and the coarse map of one parameter."""

    def __init__(self, fine):
        self.fine = fine
        self.basis = np.sin(np.pi * np.outer(fine.x, np.arange(1, MODES + 1)))
        weights = np.full(fine.x.size, fine.h)
        weights[[0, -1]] = fine.h / 2
        gram = self.basis.T @ (weights[:, None] * self.basis)
        self.projection = np.linalg.solve(gram, self.basis.T * weights)

    def restrict(self, u):
        return self.projection @ u

    def lift(self, U, lam):
        u = self.basis @ U
        for _ in range(HEALING_STEPS):
            u = self.fine.step(u, lam)
            u = u + self.basis @ (U - self.restrict(u))
        return u

    def stepper(self, lam):
        coarse = self

        class Stepper:
            @property
            def micro_steps(self):
                return coarse.fine.steps

            def __call__(self, U, t, T):
                u = coarse.lift(U, lam)
                for _ in range(round(T / DT)):
                    u = coarse.fine.step(u, lam)
                return coarse.restrict(u)

        return Stepper()


def _integrate(coarse, lam):
    """Backward Euler from zero until the coarse state moves <= TOL over one horizon."""
    fine = coarse.fine
    u, previous, steps = np.zeros(fine.x.size), np.zeros(MODES), 0
    start = time.perf_counter()
    while True:
        for _ in range(round(HORIZON / DT)):
            u = fine.step(u, lam)
        steps += round(HORIZON / DT)
        current = coarse.restrict(u)
        if np.linalg.norm(current - previous) <= TOL:
            return current, steps, time.perf_counter() - start
        previous = current


def measure(quick: bool = False) -> dict:
    """Newton-Krylov against integration at several distances from the fold.

    Returns:
        ``{"cases": [...], "fold": ..., ...}``: per parameter, the Newton and GMRES
        iterations, map evaluations, micro steps and seconds of Newton-Krylov and of
        integration, their ratios, and the difference of the two steady states; the
        summary fields repeat the case closest to the fold.
    """
    from hmm_fem.equation_free import coarse_steady_state

    fractions = (0.5, 0.98) if quick else (0.5, 0.9, 0.98, 0.995, 0.999)
    fine = _FineBratu()
    coarse = _Coarse(fine)
    # Warm-up (imports, first PETSc objects) outside the timings.
    coarse_steady_state(coarse.stepper(1.0), np.zeros(MODES), horizon=HORIZON, tol=1e-4)
    cases = []
    for fraction in fractions:
        lam = fraction * FOLD
        U, report = coarse_steady_state(
            coarse.stepper(lam),
            np.zeros(MODES),
            horizon=HORIZON,
            tol=TOL,
            map_error=1e-12,
            return_report=True,
        )
        reference, steps, seconds = _integrate(coarse, lam)
        cases.append(
            {
                "lambda_over_fold": fraction,
                "newton_iterations": report.newton_iterations,
                "krylov_iterations": report.krylov_iterations,
                "map_evaluations": report.map_evaluations,
                "newton_krylov_micro_steps": report.micro_steps,
                "newton_krylov_seconds": report.seconds,
                "integration_micro_steps": steps,
                "integration_seconds": seconds,
                "micro_step_ratio": steps / report.micro_steps,
                "time_ratio": seconds / report.seconds,
                "relative_difference": float(
                    np.linalg.norm(U - reference) / np.linalg.norm(reference)
                ),
            }
        )
    closest = cases[-1]
    return {
        "cases": cases,
        "fold": FOLD,
        "coarse_size": MODES,
        "tolerance": TOL,
        "newton_iterations": closest["newton_iterations"],
        "krylov_iterations": closest["krylov_iterations"],
        "newton_krylov_seconds": closest["newton_krylov_seconds"],
        "integration_seconds": closest["integration_seconds"],
        "micro_step_ratio": closest["micro_step_ratio"],
    }


if __name__ == "__main__":
    import argparse

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="two parameters only")
    figures = measure(parser.parse_args().quick)
    print(
        f"{'lambda/fold':>11} {'Newton':>6} {'GMRES':>6} {'maps':>5} {'NK steps':>9} "
        f"{'NK s':>7} {'int steps':>9} {'int s':>7} {'steps':>7} {'time':>7} {'diff':>8}"
    )
    for case in figures["cases"]:
        print(
            f"{case['lambda_over_fold']:11.3f} {case['newton_iterations']:6d} "
            f"{case['krylov_iterations']:6d} {case['map_evaluations']:5d} "
            f"{case['newton_krylov_micro_steps']:9d} {case['newton_krylov_seconds']:7.3f} "
            f"{case['integration_micro_steps']:9d} {case['integration_seconds']:7.3f} "
            f"{case['micro_step_ratio']:6.1f}x {case['time_ratio']:6.1f}x "
            f"{case['relative_difference']:8.1e}"
        )
    print(
        f"Newton-Krylov at {figures['cases'][-1]['lambda_over_fold']:.3f} of the fold: "
        f"{figures['newton_iterations']} Newton / {figures['krylov_iterations']} GMRES "
        f"iterations, {figures['newton_krylov_seconds']:.3f} s against "
        f"{figures['integration_seconds']:.3f} s of integration "
        f"({figures['micro_step_ratio']:.1f}x fewer micro steps)"
    )
