"""Fast–slow stochastic systems: HMM estimators of the slow drift and diffusion.

The heterogeneous multiscale method for ``dX = f(X, Y, t) dt`` driven by a fast stochastic
process ``Y`` (E, Liu & Vanden-Eijnden, Commun. Pure Appl. Math. 58, 2005):

* fast processes vectorised over replicas (``fast.py``): :class:`EulerMaruyama` for SDEs,
  :class:`ReactionNetwork` for Markov jump processes (Gillespie, all replicas per event);
* :class:`FastSlowEstimator` (``estimator.py``): bursts with the slow state frozen; the
  effective drift (time average of ``f`` after a burn-in, over replicas) and the effective
  diffusion (variance growth of a slow increment), each with its standard error, and the
  stationary average of any function of the fast state (``average``); replicas
  in blocks over MPI ranks with rank-independent streams, common random numbers by key,
  warm starts;
* :func:`plan_burst`, :func:`plan_warm_starts` (``control.py``): burn-in, window and
  replicas from a tolerance, for cold and warm starts;
* :func:`hmm_integrate` (``integrate.py``): explicit and implicit Euler (Newton on the
  estimated drift with common random numbers) with propagated error bars, and
  Euler–Maruyama with the estimated diffusion; the cost against a direct simulation;
* :class:`EffectiveDriftModel` (``model.py``): the effective drift behind the micro seam,
  for a macro FE problem.
"""

from .control import BurstPlan, plan_burst, plan_warm_starts
from .estimator import (
    DiffusionEstimate,
    Estimate,
    FastSimulationError,
    FastSlowEstimator,
    Jacobian,
)
from .fast import EulerMaruyama, ReactionNetwork
from .integrate import HMMReport, HMMSolution, hmm_integrate
from .model import EffectiveDriftModel

__all__ = [
    "EulerMaruyama",
    "ReactionNetwork",
    "FastSlowEstimator",
    "Estimate",
    "DiffusionEstimate",
    "Jacobian",
    "FastSimulationError",
    "BurstPlan",
    "plan_burst",
    "plan_warm_starts",
    "hmm_integrate",
    "HMMSolution",
    "HMMReport",
    "EffectiveDriftModel",
]
