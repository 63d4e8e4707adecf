"""Benchmark: ion-hopping KMC events per second, and micro solves saved by the temperature grid.

1. **Events per second** of the compiled ion-hopping kernel (``IonHopping``), one core,
   CPU time of the thread (best of ``--repeat``): one 256^2 lattice half filled with ions
   under a weak bias, and the micro model's own configuration (8 replicas of 24^2).
2. **Micro solves saved** by the temperature grid (``TemperatureGrid``) in the battery
   demo's problem at 6 V (the layer with a delaminated spot, 12 x 48 cells, 60 steps of
   0.1 s). The conductivity is the Arrhenius law the demo's KMC follows, as a
   deterministic micro model, so that the error measured is that of the grid alone (with
   KMC the noise of every solve would add to it). Without a grid every distinct
   temperature at every quadrature point and Newton iterate is a solve; with a grid of
   step ``h`` the solves are the grid nodes visited. The error is the largest difference of
   the peak temperature over the run, relative to the peak heating ``T_peak - T_ambient``;
   the saving is reported at the coarsest grid with error <= 1e-3 (the KMC time per solve
   turns it into time).

The last line is ``micro solves saved: X.Xx``. Run: ``docker/run python3 benchmarks/battery.py``.
"""

import argparse
import time

import numpy as np

parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
parser.add_argument("--repeat", type=int, default=3, help="timed KMC runs (best is kept)")
parser.add_argument("--steps", type=int, default=60, help="time steps of 0.1 s")
args = parser.parse_args()

import ufl
from dolfinx import mesh as dmesh
from mpi4py import MPI

from hmm_fem.macro.electrothermal import ElectroThermal
from hmm_fem.micro import MicroModel, MicroResponse
from hmm_fem.micro.kmc.ion_hopping import (
    BOLTZMANN_EV,
    HoppingMaterial,
    IonConductivityModel,
    IonHopping,
)

# -- 1. events per second ------------------------------------------------------------------


def events_per_second(shape, replicas, duration):
    sim = IonHopping(shape, 0.5, replicas=replicas, bias=0.05, seed=1)
    sim.run(1.0)  # compiles (or loads the cache)
    best = 0.0
    for _ in range(args.repeat):
        cpu = time.thread_time()
        hops = int(sim.run(duration).sum())
        best = max(best, hops / (time.thread_time() - cpu))
    return best


rate_big = events_per_second((256, 256), 1, 20.0)
print(f"one 256^2 lattice: {rate_big:.3g} hops/s", flush=True)
rate_model = events_per_second((24, 24), 8, 200.0)
print(f"8 replicas of 24^2 (the micro model's size): {rate_model:.3g} hops/s", flush=True)
material = HoppingMaterial()
kmc_model = IonConductivityModel(material, seed=1)
start = time.perf_counter()
kmc_model.evaluate({"T": np.array([300.0, 301.0, 302.0, 303.0])})
kmc_seconds = (time.perf_counter() - start) / 4
print(f"one KMC conductivity solve (24^2, 8 replicas, 50 / Gamma0): {kmc_seconds * 1e3:.0f} ms",
      flush=True)

# -- 2. solves saved by the temperature grid ------------------------------------------------


class Arrhenius(MicroModel):
    """The lattice-gas law of the KMC, ``A / T exp(-E_a / k T)``, with its tangent."""

    inputs = {"T": ()}
    output_shape = ()

    def __init__(self):
        self.solves = 0

    def micro_state(self, inputs, parameters):
        return np.asarray(inputs["T"]).reshape(-1, 1)

    def solve(self, state, context):
        self.solves += 1
        T = state[0]
        s = float(material.lattice_gas_conductivity(T))
        return {"s": s, "ds": s * (material.activation_energy / (BOLTZMANN_EV * T * T) - 1 / T)}

    def respond(self, solutions, inputs, parameters):
        return MicroResponse(solutions["s"], {"T": solutions["ds"]}, dict(solutions))


Lx, Ly = 1e-3, 4e-3
cell = dmesh.create_rectangle(MPI.COMM_SELF, [[0.0, 0.0], [Lx, Ly]], [12, 48])
x = ufl.SpatialCoordinate(cell)
electrode = ufl.conditional(ufl.Or(ufl.lt(x[0], 1e-6), ufl.gt(x[0], Lx - 1e-6)), 1.0, 0.0)
weak = 1.0 - 0.8 * ufl.exp(-(((x[1] - Ly / 2) / 0.5e-3) ** 2))


def run(resolution):
    law = Arrhenius()
    problem = ElectroThermal(
        cell, law,
        voltage=[(lambda p: np.isclose(p[0], 0.0), 0.0), (lambda p: np.isclose(p[0], Lx), 6.0)],
        thermal_conductivity=1.0, heat_capacity=2e6, heat_transfer=2000.0 * weak * electrode,
        ambient_temperature=300.0, dt=0.1, initial_temperature=300.0,
        temperature_resolution=resolution, petsc_options={"snes_atol": 1e-9},
    )
    start = time.perf_counter()
    peaks = []
    for _ in range(args.steps):
        problem.step()
        peaks.append(problem.peak_temperature())
    return np.array(peaks), law.solves, time.perf_counter() - start


exact, exact_solves, seconds = run(None)
heating = exact.max() - 300.0
print(f"no grid: {exact_solves} solves, peak {exact[-1]:.3f} K ({seconds:.1f} s)", flush=True)
saving = None
for h in (0.05, 0.1, 0.25, 0.5, 1.0, 2.0, 4.0):
    peaks, solves, seconds = run(h)
    error = np.abs(peaks - exact).max() / heating
    print(f"grid {h:5.2f} K: {solves:4d} solves ({exact_solves / solves:8.1f}x fewer), "
          f"peak error {error:.1e} of the heating ({seconds:.1f} s)", flush=True)
    if error <= 1e-3:
        saving = (h, exact_solves / solves, solves)
h, factor, solves = saving
print(f"at <= 1e-3: grid {h} K, {solves} KMC solves instead of {exact_solves}: "
      f"{solves * kmc_seconds:.1f} s of KMC instead of {exact_solves * kmc_seconds / 3600:.1f} h")
print(f"micro solves saved: {factor:.1f}x")
