# ---
# jupyter:
#   jupytext:
#     text_representation:
#       extension: .py
#       format_name: light
# ---

# # Solid-state battery: ion hopping, Joule heating, a hot spot and thermal runaway
#
# A solid electrolyte layer, $L_x = 1$ mm thick between two electrodes and $L_y = 4$ mm
# wide, carries an ionic current under a constant voltage $V$. The current heats it (Joule,
# $\sigma|\nabla\phi|^2$); heat leaves through the electrodes,
# $-k\,\partial T/\partial n = h(y)\,(T - T_a)$, except where a contact is partly
# delaminated: around $y = L_y/2$ the heat transfer drops to 20 %. The sides are insulated.
#
# $$\nabla\cdot(\sigma(T)\nabla\phi) = 0,\qquad
#   \rho c\,\partial_t T = \nabla\cdot(k\nabla T) + \sigma(T)\,|\nabla\phi|^2 .$$
#
# **Micro.** Nobody gives $\sigma(T)$: at every quadrature point the macro problem asks a
# kinetic Monte Carlo simulation of vacancy-mediated ion hopping
# (`hmm_fem.micro.kmc.IonConductivityModel`: a square lattice half filled with ions that hop
# to vacant neighbours at $\nu_0 e^{-E_a/k_BT}$, $E_a = 0.3$ eV, under a small bias; the
# conductivity from the drift current). The temperature is its state: the micro model is
# solved on a 1 K grid and interpolated (`TemperatureGrid`), so the points of one interval
# share a solve, and solves are kept across Newton iterates and time steps. The loop is the
# seed's: macro asks micro, micro answers, T updates, micro feels T.
#
# **Feedback.** $\sigma$ grows by 3.5 % per kelvin. Where cooling is weak the electrolyte
# runs hotter, conducts better, draws more current and heats more: a hot spot. At 6 V it
# settles; at 9.5 V the feedback wins and the temperature runs away.
#
# **Self-check.** The same macro problem with $\sigma(T) = (A/T)\,e^{-E_a/k_BT}$ from an
# Arrhenius fit to *separate* KMC runs at five temperatures: the peak temperatures agree
# within the KMC noise (4 standard errors propagated from the solves' standard errors
# through the macro problem's sensitivity to $\ln\sigma$), the fitted $E_a$ is the micro
# model's within 4 standard errors, the hot spot forms, and 9.5 V runs away while 6 V
# settles.
#
# Run: `python3 demos/demo_battery_runaway.py` (`--quick`: the test size; `mpirun -n 2`
# works). Output: `battery_6V_*.bp` and `battery_runaway_*.bp` (T, phi and sigma for
# ParaView), `battery_runaway.png`.

# +
import argparse
import math
import sys
import time
from pathlib import Path

import numpy as np
import ufl
from dolfinx import mesh as dmesh
from mpi4py import MPI

from hmm_fem.coupling import MacroSolveError
from hmm_fem.macro.electrothermal import ElectroThermal
from hmm_fem.micro import MicroSolveError
from hmm_fem.micro.kmc.ion_hopping import (
    BOLTZMANN_EV,
    HoppingMaterial,
    IonConductivityModel,
    arrhenius_fit,
    ion_conductivity,
)

parser = argparse.ArgumentParser(description="solid-state battery: KMC conductivity, runaway")
parser.add_argument("--quick", action="store_true", help="small sizes (used by the tests)")
parser.add_argument("--output", default="results/battery_runaway", help="output folder")
parser.add_argument("--no-png", action="store_true", help="skip the picture")
parser.add_argument("--seed", type=int, default=7, help="seed of the KMC streams")
args = parser.parse_args()
comm = MPI.COMM_WORLD
say = print if comm.rank == 0 else (lambda *a, **k: None)
output = Path(args.output)

material = HoppingMaterial(activation_energy=0.3, attempt_frequency=1e13, ion_fraction=0.5)
if args.quick:
    kmc = dict(shape=(12, 12), replicas=4, duration=20.0)
    cells, dt, t_end = (6, 24), 0.2, 4.0
else:
    kmc = dict(shape=(24, 24), replicas=8, duration=50.0)
    cells, dt, t_end = (12, 48), 0.1, 6.0
V_LOW, V_HIGH, T_RUNAWAY = 6.0, 9.5, 400.0
Lx, Ly, T_AMBIENT = 1e-3, 4e-3, 300.0
K_THERMAL, RHO_C, H0 = 1.0, 2e6, 2000.0  # W/(m K), J/(m^3 K), W/(m^2 K)
RESOLUTION = 1.0  # K, the temperature grid of the micro solves
# -

# ## Separate KMC runs and their Arrhenius fit (the reference's conductivity)

# +
start = time.perf_counter()
T_fit = np.array([290.0, 330.0, 370.0, 410.0, 450.0])
separate = np.array(
    [ion_conductivity(material, T, seed=(args.seed, 99, k), **kmc) for k, T in enumerate(T_fit)]
)
A, Ea, cov = arrhenius_fit(T_fit, separate[:, 0], separate[:, 1])
say(f"separate KMC runs: sigma(T) = {A:.4g}/T exp(-{Ea:.4f} eV / kT) "
    f"(E_a +- {math.sqrt(cov[1, 1]):.1e}; {time.perf_counter() - start:.1f} s)")
for (s, e), T in zip(separate, T_fit):
    say(f"  T = {T:5.0f} K: sigma = {s:.5g} +- {e:.2g} S/m "
        f"(lattice gas, infinite lattice: {float(material.lattice_gas_conductivity(T)):.5g})")


def law(T):
    return A / T * ufl.exp(-Ea / (BOLTZMANN_EV * T))


def fit_relative_error(T):
    """Standard error of ln sigma predicted by the fit at T (from its covariance)."""
    g = np.array([1.0, -1.0 / (BOLTZMANN_EV * T)])
    return float(np.sqrt(g @ cov @ g))


# -

# ## The macro problem

# +
cell_mesh = dmesh.create_rectangle(comm, [[0.0, 0.0], [Lx, Ly]], list(cells))
x = ufl.SpatialCoordinate(cell_mesh)
on_electrode = ufl.conditional(
    ufl.Or(ufl.lt(x[0], 1e-3 * Lx), ufl.gt(x[0], (1 - 1e-3) * Lx)), 1.0, 0.0
)
delaminated = 1.0 - 0.8 * ufl.exp(-(((x[1] - Ly / 2) / (0.5e-3)) ** 2))
options = {"snes_atol": 1e-9, "snes_max_it": 12}  # round-off floor in SI units: 1e-12


def battery(conductivity, voltage, **extra):
    return ElectroThermal(
        cell_mesh, conductivity,
        voltage=[(lambda p: np.isclose(p[0], 0.0), 0.0), (lambda p: np.isclose(p[0], Lx), voltage)],
        thermal_conductivity=K_THERMAL, heat_capacity=RHO_C,
        heat_transfer=H0 * delaminated * on_electrode, ambient_temperature=T_AMBIENT,
        dt=dt, initial_temperature=T_AMBIENT, petsc_options=options, **extra,
    )


def run(problem, label):
    """Time steps until t_end or the runaway temperature; the peak temperature history."""
    times, peaks = [0.0], [T_AMBIENT]
    start = time.perf_counter()
    while problem.time < t_end - 1e-12:
        try:
            problem.step()
        except (MacroSolveError, MicroSolveError) as failure:
            # T explodes within the step: Newton diverges, or an iterate leaves the micro
            # model's domain (T <= 0); both are collective. The state is the last step's.
            say(f"  {label}: no solution at t = {problem.time + dt:.2f} s (runaway): "
                f"{type(failure).__name__}")
            break
        times.append(problem.time)
        peaks.append(problem.peak_temperature())
        if peaks[-1] > T_RUNAWAY:
            break
    say(f"  {label}: t = {times[-1]:.2f} s, peak T = {peaks[-1]:.2f} K "
        f"({time.perf_counter() - start:.1f} s)")
    return np.array(times), np.array(peaks)


model = IonConductivityModel(material, seed=args.seed, **kmc)
results = {}
for voltage in (V_LOW, V_HIGH):
    say(f"V = {voltage} V")
    coupled = battery(model, voltage, temperature_resolution=RESOLUTION)
    results[voltage, "kmc"] = run(coupled, "KMC at the quadrature points")
    statistics = coupled.statistics.total(comm)
    say(f"    {statistics.point_evaluations} point evaluations, {statistics.micro_solves} "
        f"interval solves, {comm.allreduce(coupled.coupling.model.node_solves)} KMC solves "
        f"(summed over ranks)")
    _, values, errors = coupled.coupling.model.nodes()
    relative = np.concatenate(comm.allgather(errors / values))
    results[voltage, "noise"] = float(np.median(relative))  # of one KMC solve's sigma
    # Every problem is destroyed on all ranks at once when done: left to the garbage
    # collector, PETSc's collective destruction could meet another collective call.
    reference = battery(law, voltage)
    results[voltage, "fit"] = run(reference, "Arrhenius fit")
    reference.destroy()
    # Sensitivity of the peak temperature to ln sigma: the fit's law scaled by 1 + delta.
    delta = 1e-2
    scaled = battery(lambda T, d=delta: (1 + d) * law(T), voltage)
    results[voltage, "scaled"] = run(scaled, "fit x 1.01")
    scaled.destroy()
    results[voltage, "delta"] = delta
    if voltage == V_LOW:
        written = coupled.write(output / "battery_6V")
    else:
        written = coupled.write(output / "battery_runaway")
    for kind, path in written.items():
        say(f"    wrote {kind:<6} {path}")
    if voltage == V_LOW:
        # The hot spot: T along the middle of the layer, at the delamination and the sides.
        T = coupled.T
        coords = T.function_space.tabulate_dof_coordinates()
        owned = T.function_space.dofmap.index_map.size_local
        middle = np.abs(coords[:owned, 0] - Lx / 2) < 0.51 * Lx / cells[0]
        profile = np.concatenate(comm.allgather(
            np.column_stack([coords[:owned, 1][middle], T.x.array[:owned][middle]])))
        profile = profile[np.argsort(profile[:, 0])]
        results["profile"] = profile
    coupled.destroy()
# -

# ## Checks

# +
checks = {}
E_error = math.sqrt(cov[1, 1])
checks[f"Arrhenius fit of separate KMC runs: E_a = {Ea:.4f} eV, the model's "
       f"{material.activation_energy} eV within 4 standard errors ({4 * E_error:.1e})"] = (
    abs(Ea - material.activation_energy) < 4 * E_error
)
for voltage in (V_LOW, V_HIGH):
    t_kmc, peak_kmc = results[voltage, "kmc"]
    t_fit, peak_fit = results[voltage, "fit"]
    _, peak_scaled = results[voltage, "scaled"]
    n = min(len(peak_kmc), len(peak_fit), len(peak_scaled))
    n = int(np.searchsorted(peak_fit[:n], T_RUNAWAY - 50.0)) if peak_fit[:n].max() > 350 else n
    sensitivity = np.abs(peak_scaled[:n] - peak_fit[:n]) / results[voltage, "delta"]
    noise = np.array([math.hypot(results[voltage, "noise"], fit_relative_error(T))
                      for T in peak_fit[:n]])
    gap = np.abs(peak_kmc[:n] - peak_fit[:n])
    allowed = 4 * noise * sensitivity + 1e-6 * peak_fit[:n]
    checks[f"{voltage} V: peak T with KMC at the points agrees with the Arrhenius-fit problem "
           f"within the KMC noise (largest gap {gap.max():.3g} K, allowed "
           f"{allowed[np.argmax(gap)]:.3g} K, over {n} steps)"] = bool(np.all(gap <= allowed))
t_low, peak_low = results[V_LOW, "kmc"]
t_high, peak_high = results[V_HIGH, "kmc"]
rises = np.diff(peak_low)
checks[f"{V_LOW} V settles: the peak ({peak_low[-1]:.2f} K) rises {rises[-1]:.3f} K in the "
       f"last step, less than 1/10 of its fastest rise ({rises.max():.3f} K)"] = (
    rises[-1] < 0.1 * rises.max()
)
ran_away = peak_high[-1] > T_RUNAWAY or t_high[-1] < t_end - 1e-9
how = (f"past {T_RUNAWAY:.0f} K" if peak_high[-1] > T_RUNAWAY
       else "the next step has no solution")
checks[f"{V_HIGH} V runs away: peak {peak_high[-1]:.1f} K at t = {t_high[-1]:.2f} s, {how}"] = (
    ran_away
)
profile = results["profile"]
centre = np.interp(Ly / 2, profile[:, 0], profile[:, 1])
side = profile[0, 1]
checks[f"a hot spot at the delamination: {centre:.2f} K against {side:.2f} K at the side "
       "(heating at least 1.3 x)"] = (centre - T_AMBIENT) > 1.3 * (side - T_AMBIENT)
for text, ok in checks.items():
    say(f"  [{'ok' if ok else 'FAILED'}] {text}")
# -

# ## The picture

# +
if comm.rank == 0 and not args.no_png:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (left, right) = plt.subplots(1, 2, figsize=(11, 4.2))
    for voltage, colour in ((V_LOW, "tab:blue"), (V_HIGH, "tab:red")):
        t, peak = results[voltage, "fit"]
        left.plot(t, peak, "-", color=colour, label=f"{voltage} V, Arrhenius fit")
        t, peak = results[voltage, "kmc"]
        left.plot(t, peak, "o", color=colour, ms=3, label=f"{voltage} V, KMC at the points")
    left.axhline(T_RUNAWAY, color="grey", lw=0.8, ls="--")
    left.set_xlabel("time (s)")
    left.set_ylabel("peak temperature (K)")
    left.set_title("constant voltage: settling and runaway")
    left.legend(fontsize=8)
    right.plot(profile[:, 0] * 1e3, profile[:, 1], "-o", ms=3, color="tab:blue")
    right.axvspan((Ly / 2 - 0.5e-3) * 1e3, (Ly / 2 + 0.5e-3) * 1e3, color="orange", alpha=0.2,
                  label="weak cooling (delamination)")
    right.set_xlabel("y (mm), mid-layer")
    right.set_ylabel("T (K)")
    right.set_title(f"hot spot at {V_LOW} V, t = {t_end:g} s")
    right.legend(fontsize=8)
    fig.tight_layout()
    output.mkdir(parents=True, exist_ok=True)
    fig.savefig(output / "battery_runaway.png", dpi=120)
    say(f"wrote picture {output / 'battery_runaway.png'}")

if not all(checks.values()):
    sys.exit("demo_battery_runaway: a check FAILED")
say("demo_battery_runaway: all checks passed")
# -
