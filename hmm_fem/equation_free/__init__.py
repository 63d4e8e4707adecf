"""Equation-free tools around a coarse time-stepper (lift, evolve, restrict).

A micro simulator whose macroscopic equation nobody can write down is run in short bursts;
numerical analysis is wrapped around the resulting coarse time-stepper:

* :class:`CoarseTimeStepper` (``stepper.py``): lift, micro steps, restrict; healing,
  replicas over MPI ranks with rank-independent seeds, the time derivative estimated from
  the burst with its standard error;
* :func:`projective_integrate` (``projective.py``): projective forward Euler, PIRK2, PIRK4,
  and the PIG family (any ``scipy.integrate.solve_ivp`` method driven by the estimated
  derivative), with step-size control and a report of the micro steps saved;
* :func:`coarse_steady_state`, :func:`continuation`, :func:`coarse_eigenvalues`
  (``steady.py``): fixed points of the coarse map by Jacobian-free Newton-Krylov (PETSc SNES,
  matrix-free), pseudo-arclength continuation with folds and stability, eigenvalues of the
  linearised coarse map (dense or SLEPc);
* :class:`PatchDynamics` (``patches.py``): gap-tooth patches of a micro simulator at the
  nodes of a coarse grid in 1D and 2D.
"""

__all__ = [
    "CoarseTimeStepper",
    "projective_integrate",
    "coarse_steady_state",
    "continuation",
    "coarse_eigenvalues",
    "PatchDynamics",
]

_WHERE = {
    "CoarseTimeStepper": "stepper",
    "projective_integrate": "projective",
    "coarse_steady_state": "steady",
    "continuation": "steady",
    "coarse_eigenvalues": "steady",
    "PatchDynamics": "patches",
}


def __getattr__(name):
    # Each tool in its own module, loaded on first use (the patch tools load DOLFINx).
    if name in _WHERE:
        import importlib

        return getattr(importlib.import_module(f"hmm_fem.equation_free.{_WHERE[name]}"), name)
    raise AttributeError(f"module 'hmm_fem.equation_free' has no attribute {name!r}")
