"""Benchmark: what the remedies of the built-in micro models cost, and what they cure.

Prints, for each case a failed plain solve and the retry that cures it (wall times, Newton
steps), and the accuracy of the cured answer against an independent reference:

  - the hyperelastic cell (square, inclusion 1000 times stiffer, P1, mesh size 0.1) at
    ``H = [[1.5, 0.8], [0, -0.6]]`` from rest: the plain Newton (cold, 25 steps) fails;
    ``"substeps"`` (4 increments) and ``"path_from_zero"`` (8) cure it. Reference: the
    same state reached in 32 equal load steps;
  - the plastic cell (perfectly plastic J2 matrix around a void, mesh size 0.08) at the
    strain ``(0.05, -0.03, 0.04)`` from the virgin state: backtracking Newton stalls;
    ``"more_iterations"`` and ``"l2_line_search"`` cure it (they are each other's
    reference);
  - the MD box (48-atom 2D LJ, T* = 0.5): a run of 10^7 steps stopped by the timeout of
    0.3 s (LAMMPS ``timer timeout``): the time to stop; a trajectory that blows up at
    dt = 0.04 and its ``"smaller_timestep"`` retry (dt = 0.02), against a plain run at
    dt = 0.02 (z-scores) and at dt = 0.005 (the time-step error of the pressure), over
    ``--seeds`` seeds.

Last line: ``hyperelastic substeps/plain: X.X`` (the time of the cured solve over that of
the failed plain attempt).

Serial, one process. Run: ``docker/run python3 benchmarks/remedies.py``.
"""

import argparse
import os
import time

import numpy as np

parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
parser.add_argument("--seeds", type=int, default=10, help="seeds of the MD comparison")
SEEDS = parser.parse_args().seeds

from hmm_fem import cells  # noqa: E402
from hmm_fem.cells import CellSolveError, HyperelasticCell  # noqa: E402
from hmm_fem.materials import J2Plasticity  # noqa: E402
from hmm_fem.micro import PlasticityModel, SolveContext  # noqa: E402
from hmm_fem.micro.md import LammpsError, LammpsTimeout, MDStressModel  # noqa: E402


def relative(a, b):
    return float(np.abs(np.asarray(a) - b).max() / np.abs(b).max())


def timed(function):
    start = time.perf_counter()
    try:
        result = function()
    except (CellSolveError, LammpsError) as error:
        result = error
    return result, time.perf_counter() - start


print(f"load average at start: {os.getloadavg()[0]:.2f}")

# -- hyperelastic ------------------------------------------------------------------------------
square = cells.square(0.3, mesh_size=0.1)
phases = {"matrix": (1.0, 0.3), "inclusion": (1000.0, 0.2)}
H = np.array([[1.5, 0.8], [0.0, -0.6]])
cell = HyperelasticCell(square, phases)
cell.respond(0.01 * H)  # JIT and first factorisation, not timed
cell.reset()
reference, t_ref = timed(lambda: [cell.respond(t * H) for t in np.linspace(0, 1, 33)[1:]][-1])
cell.reset()
failure, t_plain = timed(lambda: cell.respond(H))
assert isinstance(failure, CellSolveError), "the plain solve was expected to fail"
print("hyperelastic cell, contrast 1000, H = [[1.5, 0.8], [0, -0.6]] from rest:")
print(f"  plain Newton (fails, 25 steps): {t_plain:.3f} s")
print(f"  reference, 32 load steps: {t_ref:.3f} s")
times = {}
for remedy, kwargs in (("substeps", {"substeps": 4}), ("path_from_zero", {"substeps": 8})):
    cell.reset()
    (P, A), t = timed(lambda kw=kwargs: cell.respond(H, **kw))
    times[remedy] = t
    print(
        f"  {remedy}: {t:.3f} s, {cell.iterations} Newton steps over {len(cell.path)} "
        f"increments; P* rel. error {relative(P, reference[0]):.1e}, A* "
        f"{relative(A, reference[1]):.1e}"
    )
cell.destroy()

# -- plastic -----------------------------------------------------------------------------------
voided = cells.square(0.3, mesh_size=0.08)
model = PlasticityModel(voided, {"matrix": J2Plasticity(1.0, 0.3, 0.01, dim=2), "inclusion": None})
E = np.array([0.05, -0.03, 0.04])
virgin = model.initial_history()
model.solve(0.01 * E, SolveContext(history=virgin))  # JIT, not timed
model.cell.reset()
failure, t_plain_p = timed(lambda: model.solve(E, SolveContext(history=virgin)))
assert isinstance(failure, CellSolveError), "the plain plastic solve was expected to fail"
print("plastic cell, perfectly plastic matrix around a void, E = (0.05, -0.03, 0.04):")
print(f"  plain Newton (fails, 25 steps): {t_plain_p:.3f} s")
results = {}
for remedy in model.remedies:
    model.cell.reset()
    results[remedy], t = timed(
        lambda r=remedy: model.solve(E, SolveContext(history=virgin, remedy=r))
    )
    print(f"  {remedy}: {t:.3f} s, {int(results[remedy]['iterations'])} Newton steps")
print(
    "  the two agree: stress "
    f"{relative(results['l2_line_search']['stress'], results['more_iterations']['stress']):.1e}"
)
model.destroy()

# -- MD ----------------------------------------------------------------------------------------
MD = {"density": 0.9, "temperature": 0.5, "cells": (6, 4), "damping": 0.5}
md = MDStressModel("hex", timestep=0.005, equilibration=10**7, blocks=2, block_steps=10, **MD)
stopped, t_stop = timed(lambda: md.solve(np.zeros(4), SolveContext(seed=(1, 0), timeout=0.3)))
assert isinstance(stopped, LammpsTimeout)
md.close()
print(f"MD box, 48 atoms, a run of 1e7 steps with a timeout of 0.3 s: stopped after {t_stop:.3f} s")
bad = MDStressModel(
    "hex", timestep=0.04, equilibration=250, blocks=32, block_steps=100, sample_every=10, **MD
)
half = MDStressModel(
    "hex", timestep=0.02, equilibration=500, blocks=32, block_steps=200, sample_every=20, **MD
)
fine = MDStressModel(
    "hex", timestep=0.005, equilibration=2000, blocks=32, block_steps=800, sample_every=80, **MD
)
t_blow, t_cure, t_fine, blown = [], [], [], 0
z_half, bias = [], []
for seed in range(SEEDS):
    failure, t = timed(lambda s=seed: bad.solve(np.zeros(4), SolveContext(seed=(s, 0))))
    t_blow.append(t)
    blown += isinstance(failure, LammpsError)
    cured, t = timed(
        lambda s=seed: bad.solve(np.zeros(4), SolveContext(seed=(s, 0), remedy="smaller_timestep"))
    )
    t_cure.append(t)
    plain_half = half.solve(np.zeros(4), SolveContext(seed=(seed, 1)))
    good, t = timed(lambda s=seed: fine.solve(np.zeros(4), SolveContext(seed=(s, 2))))
    t_fine.append(t)
    sigma = np.hypot(cured["standard_error"], plain_half["standard_error"])
    z_half.append(((cured["value"] - plain_half["value"]) / sigma).ravel()[[0, 1, 3]])
    bias.append(float(cured["pressure"] / good["pressure"] - 1.0))
print(
    f"MD box, 48 atoms, T* = 0.5, {SEEDS} seeds: dt = 0.04 blew up in {blown} "
    f"({np.mean(t_blow):.3f} s each, box rebuilt); smaller_timestep (dt = 0.02, same physical "
    f"time): {np.mean(t_cure):.3f} s; a run at dt = 0.005: {np.mean(t_fine):.3f} s"
)
print(
    f"  cured vs a plain dt = 0.02 run: max |z| {np.abs(z_half).max():.2f} of {3 * SEEDS}; "
    f"pressure vs dt = 0.005: {100 * np.mean(bias):+.2f} % +- "
    f"{100 * np.std(bias, ddof=1) / np.sqrt(SEEDS):.2f} % (the time-step error of dt = 0.02)"
)
bad.close()
half.close()
fine.close()
print(f"load average at end: {os.getloadavg()[0]:.2f}")
print(f"hyperelastic substeps/plain: {times['substeps'] / t_plain:.1f}")
