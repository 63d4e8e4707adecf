# ---
# jupyter:
#   jupytext:
#     text_representation:
#       extension: .py
#       format_name: light
# ---

# # CO oxidation on a catalyst: kinetic Monte Carlo and its coarse bifurcation diagram
#
# The Ziff-Gulari-Barshad (ZGB) model (Phys. Rev. Lett. 56, 2553, 1986): CO adsorbs on an
# empty site (rate $y$), O$_2$ on an empty nearest-neighbour pair (rate $(1-y)/2$ per
# pair) and dissociates, and a CO next to an O reacts to CO$_2$, which leaves. It has two
# kinetic phase transitions: below $y_1$ the surface poisons with O (continuous,
# directed-percolation class), above $y_2$ with CO (discontinuous). Published values for
# the original model (instantaneous reaction) on large lattices: $y_1 = 0.3874(1)$
# (Jensen, Fogedby & Dickman, Phys. Rev. A 41, 3411, 1990), $y_2 = 0.52560(1)$ (Ziff &
# Brosilow, Phys. Rev. A 46, 4630, 1992).
#
# 1. **Brute force, original model.** The compiled KMC engine runs from the empty lattice
#    at each $y$; the transitions are where half the replicas poison (shifted on a finite
#    lattice within a finite time: the check allows `DELTA`).
# 2. **Coarse bifurcation, well-mixed limit.** The equation-free tools on the KMC as micro
#    simulator, coverages $(\theta_{CO}, \theta_O)$ as coarse variables (lift: random
#    placement; restrict: coverages; replicas): pseudo-arclength continuation of the
#    coarse steady states in $y$, coarse eigenvalues for their stability. With a random
#    lift, coverages are a closed coarse description only if the adsorbates mix faster
#    than they react: the original model grows CO islands near $y_2$ and its coarse
#    steady states drift with the horizon. We use a finite reaction rate $k = 1$, and
#    first the well-mixed KMC (reaction partners drawn at random: infinite diffusion),
#    whose coarse map is the mean-field flow: its fold is $y = 1/2$, $\theta_{CO} =
#    \theta_O = 1/4$, exactly. Continuation must turn there and come back along the
#    unstable (saddle) branch, which brute force cannot show.
# 3. **Coarse bifurcation on the lattice with mobile CO.** $k = 1$, CO hops to an empty
#    neighbour at rate $D = 10$ per pair, O immobile (the model of Tammaro & Evans). The
#    fast CO mobility dissolves the CO islands (a CO hops ~20 times per MCS, reacts after
#    ~1 MCS): the coarse fold no longer depends on the horizon (0.4967 at $H = 2$ and
#    0.4965 at $H = 4$; without diffusion 0.480, 0.476, 0.466 at $H = 2, 4, 8$), while the
#    immobile O keeps a lift bias in $\theta_O$ (a few hundredths on the reactive branch).
#    Immobile O is also what makes the O-poisoning transition $y_1$ (the mean-field
#    O-poisoned state is unstable for every $y > 0$). It shows in the coarse eigenvalue
#    of the O-poisoned state along the vacancy direction (`absorbing_multiplier`: a few
#    random vacancies, healed, grow or die independently): it crosses 1 at $y_1$.
#
# Run: `python3 demos/demo_kmc_co_oxidation.py [--quick]`; the diagram goes to
# `results/kmc_co_oxidation/bifurcation.png`.

# +
import argparse
import math
import sys
import time
from pathlib import Path

import numpy as np
from mpi4py import MPI

from hmm_fem.equation_free import coarse_eigenvalues, coarse_steady_state, continuation
from hmm_fem.micro.kmc import zgb
from hmm_fem.micro.kmc.coarse import (
    absorbing_multiplier,
    coverage_stepper_family,
    steady_coverages,
    zgb_mean_field_fold,
    zgb_mean_field_states,
)

parser = argparse.ArgumentParser(description="ZGB kinetic Monte Carlo demo")
parser.add_argument("--quick", action="store_true", help="small sizes (used by the tests)")
parser.add_argument("--output", default="results/kmc_co_oxidation", help="output folder")
parser.add_argument("--no-png", action="store_true", help="skip the picture")
args = parser.parse_args()
comm = MPI.COMM_WORLD
say = print if comm.rank == 0 else (lambda *a, **k: None)
start = time.perf_counter()

Y1, Y2 = 0.3874, 0.5256  # published, original model (large lattices)
L = 32 if args.quick else 64  # lattice side of the brute-force sweeps
REPLICAS = 8 if args.quick else 16
BURN_IN, WINDOW = (250.0, 50.0) if args.quick else (500.0, 100.0)  # Monte Carlo steps
if args.quick:
    Y_SWEEP = np.array([0.36, 0.37, 0.38, 0.39, 0.40, 0.41, 0.50, 0.52, 0.53, 0.54, 0.55])
else:
    Y_SWEEP = np.round(np.r_[np.arange(0.36, 0.42, 0.005), np.arange(0.43, 0.51, 0.02),
                             np.arange(0.51, 0.5501, 0.005)], 4)
# Allowed shift of the original model's transitions: measured at 32^2 and 300 MCS, y1
# -0.015 and y2 +0.009 (finite lattice and finite time), plus the y grid.
DELTA = 0.02

K = 1.0  # reaction rate per CO-O pair (finite: the mean field exists)
D = 10.0  # CO hop rate per CO-empty pair on the lattice
HORIZON = 2.0  # coarse horizon (MCS)
# Coarse maps: 64^2 sites, 8 or 16 replicas (well-mixed); 32^2 or 48^2, 8 replicas (lattice).
WM_SIDE, WM_REPLICAS = 64, (8 if args.quick else 16)
LAT_SIDE, LAT_REPLICAS = (32, 8) if args.quick else (48, 8)
# Pseudo-arclength step on the lattice: the first secant must stand above the noise of two
# noise-limited Newton solutions (0.02 failed for 1 seed in 5 at 32^2, 8 replicas; 0.03
# passed 8 in 8 there and 6 in 6 at 48^2).
LAT_STEP = 0.03
# Run-to-run standard deviation of the well-mixed coarse fold (64^2, 8 replicas, H = 2),
# measured over 20 seeds (tests/test_kmc.py); more replicas only lower it.
FOLD_SD = 0.0036
# Lattice model, brute force from the empty lattice (16 replicas, 500 MCS), where half
# the replicas poison: y1 > 0.36, 0.356, 0.354 and y2 = 0.480, 0.483, 0.482 on 16^2, 32^2,
# 64^2. The spread of y1 over lattice sizes (16^2 to 64^2):
Y1_SIZE_ERROR = 0.008
Y2_SIZE_ERROR = 0.003  # and of y2
LAT_SWEEP = (np.array([0.33, 0.345, 0.36, 0.38, 0.42, 0.46, 0.475, 0.49]) if args.quick
             else np.round(np.r_[np.arange(0.32, 0.38, 0.01), np.arange(0.40, 0.47, 0.02),
                                 np.arange(0.47, 0.501, 0.005)], 4))
LAT_TIME = 300.0 if args.quick else 500.0
Y_MULT = (np.array([0.32, 0.34, 0.36, 0.38, 0.40]) if args.quick
          else np.round(np.arange(0.31, 0.4001, 0.01), 4))
MULT_LATTICES = 32 if args.quick else 128
Y_DOWN = np.array([0.40, 0.38, 0.36]) if args.quick else np.round(np.arange(0.41, 0.345, -0.01), 4)
# -

# ## 1. Brute-force KMC of the original model, from the empty lattice

# +
def crossing(ys, fractions, rising):
    """Where the poisoned fraction crosses 1/2 (linear interpolation on the y grid)."""
    f = fractions if rising else fractions[::-1]
    y = ys if rising else ys[::-1]
    k = int(np.argmax(f >= 0.5))
    if f[k] < 0.5 or k == 0:
        return np.nan
    return float(y[k - 1] + (0.5 - f[k - 1]) * (y[k] - y[k - 1]) / (f[k] - f[k - 1]))


def sweep(make_model, ys, side, burn_in, window):
    """Brute-force coverages (mean, standard error) and poisoned fractions over ``ys``."""
    rows = []
    for y in ys:
        res = steady_coverages(make_model(y), (side, side), replicas=REPLICAS, burn_in=burn_in,
                               window=window, seed=1, comm=comm)
        rows.append((y, res.mean, res.standard_error, np.mean(res.final[:, 2] > 0.99),
                     np.mean(res.final[:, 1] > 0.99)))
        say(f"  y = {y:.3f}: theta_CO = {res.mean[1]:.4f} +- {res.standard_error[1]:.4f}, "
            f"theta_O = {res.mean[2]:.4f} +- {res.standard_error[2]:.4f}; poisoned O "
            f"{rows[-1][3]:.2f}, CO {rows[-1][4]:.2f}")
    ys = np.array([r[0] for r in rows])
    return (ys, np.array([r[1] for r in rows]), np.array([r[2] for r in rows]),
            np.array([r[3] for r in rows]), np.array([r[4] for r in rows]))


say(f"1. original ZGB, brute force on {L}^2, {REPLICAS} replicas")
zgb_ys, zgb_mean, zgb_error, zgb_o, zgb_co = sweep(zgb, Y_SWEEP, L, BURN_IN, WINDOW)
y1 = crossing(zgb_ys, zgb_o, rising=False)
y2 = crossing(zgb_ys, zgb_co, rising=True)
say(f"brute force on {L}^2: y1 = {y1:.4f} (published {Y1}), y2 = {y2:.4f} (published {Y2}) "
    f"[{time.perf_counter() - start:.1f} s]")
# -

# ## 2. Coarse continuation in the well-mixed limit (k = 1)

# +
y_fold_mf, theta_fold_mf = zgb_mean_field_fold(reaction_rate=K)
wm_family = coverage_stepper_family(
    lambda y: zgb(y, reaction_rate=K), (WM_SIDE, WM_SIDE), species=["CO", "O"],
    dt=HORIZON / 4, burst_time=HORIZON, replicas=WM_REPLICAS, seed=3, comm=comm,
    well_mixed=True)
wm = continuation(wm_family, zgb_mean_field_states(0.40, reaction_rate=K)[0][1:], 0.40, 0.70,
                  horizon=HORIZON, step=0.02, tol=1e-6, max_points=30)
say(f"2. well-mixed coarse branch ({WM_SIDE}^2, {WM_REPLICAS} replicas):\n{wm}")
wm_changes = wm.stability_changes()
wm_fold = wm.fold_parameters[wm_changes[0]] if len(wm_changes) == 1 else np.nan
say(f"coarse fold y = {wm_fold:.4f} (mean field, exact: {y_fold_mf:.4f}; run-to-run sd "
    f"{FOLD_SD}) [{time.perf_counter() - start:.1f} s]")
# -

# ## 3. The lattice with mobile CO: brute force, coarse continuation, O-poisoned state

# +
def lattice_model(y):
    return zgb(y, reaction_rate=K, diffusion_rate=D)


say(f"3. lattice, k = {K:g}, D = {D:g}: brute force on {L}^2, {REPLICAS} replicas, "
    f"{LAT_TIME:g} MCS")
lat_ys, lat_mean, lat_error, lat_o, lat_co = sweep(lattice_model, LAT_SWEEP, L,
                                                   0.8 * LAT_TIME, 0.2 * LAT_TIME)
lat_y1 = crossing(lat_ys, lat_o, rising=False)
lat_y2 = crossing(lat_ys, lat_co, rising=True)
say(f"brute force: y1 = {lat_y1:.4f}, y2 = {lat_y2:.4f} [{time.perf_counter() - start:.1f} s]")

lat_family = coverage_stepper_family(
    lattice_model, (LAT_SIDE, LAT_SIDE), species=["CO", "O"], dt=HORIZON / 4,
    burst_time=HORIZON, replicas=LAT_REPLICAS, seed=3, comm=comm)
guess = lat_mean[np.argmin(np.abs(lat_ys - 0.42))][1:]
lat = continuation(lat_family, guess, 0.42, 0.70, horizon=HORIZON, step=LAT_STEP, tol=1e-6,
                   max_points=30)
say(f"coarse branch ({LAT_SIDE}^2, {LAT_REPLICAS} replicas):\n{lat}")
# Down towards y1, where the branch has no fold: Newton-Krylov at fixed y from the previous
# state (natural-parameter continuation; pseudo-arclength needs a secant of two points,
# which the noise turns over such short steps). The lift bias of the immobile O (the
# random lift has no O islands) grows with theta_O.
down = []
U = lat.states[0]
for y in Y_DOWN:
    stepper = lat_family(y)
    U = coarse_steady_state(stepper, U, horizon=HORIZON, tol=1e-6)
    mu = np.abs(coarse_eigenvalues(stepper, U, horizon=HORIZON)).max()
    down.append((y, *U, mu))
    say(f"  coarse reactive state at y = {y:.3f}: theta = {np.round(U, 4)}, |mu|max = {mu:.3f}; "
        f"lift bias theta_O (coarse - brute force) "
        f"{U[1] - np.interp(y, lat_ys, lat_mean[:, 2]):+.3f}")
down = np.array(down).reshape(-1, 4)
lat_changes = lat.stability_changes()
lat_fold = lat.fold_parameters[lat_changes[0]] if len(lat_changes) == 1 else np.nan
say(f"coarse fold y = {lat_fold:.4f} [{time.perf_counter() - start:.1f} s]")

mult = []
for y in Y_MULT:
    m = absorbing_multiplier(lattice_model(y), (64, 64), species="O", horizon=64.0,
                             healing_time=32.0, dilution=0.005, lattices=MULT_LATTICES, seed=5,
                             comm=comm)
    mult.append((m.value, m.standard_error))
    say(f"  O-poisoned state at y = {y:.3f}: mu = {m.value:.3f} +- {m.standard_error:.3f}")
mult = np.array(mult)
above = np.flatnonzero(mult[:, 0] > 1)
coarse_y1, coarse_y1_error = np.nan, np.nan
if len(above) and above[0] > 0:
    a, b = above[0] - 1, above[0]
    (mu_a, se_a), (mu_b, se_b) = mult[a], mult[b]
    coarse_y1 = Y_MULT[a] + (1 - mu_a) * (Y_MULT[b] - Y_MULT[a]) / (mu_b - mu_a)
    # Delta method: the crossing moves by se / slope for each end's error.
    coarse_y1_error = math.hypot(se_a, se_b) * (Y_MULT[b] - Y_MULT[a]) / (mu_b - mu_a)
say(f"coarse y1 (O-poisoned state's eigenvalue crosses 1) = {coarse_y1:.4f} +- "
    f"{coarse_y1_error:.4f}; brute force {lat_y1:.4f}")
# -

# ## Checks

# +
checks = {}
checks[f"original ZGB: y1 = {y1:.4f} within {DELTA} of the published {Y1}"] = abs(y1 - Y1) < DELTA
checks[f"original ZGB: y2 = {y2:.4f} within {DELTA} of the published {Y2}"] = abs(y2 - Y2) < DELTA
checks[f"well-mixed: continuation turns at one fold, y = {wm_fold:.4f}, within 4 sd "
       f"({4 * FOLD_SD}) of the mean-field fold {y_fold_mf:.4f}"] = (
    abs(wm_fold - y_fold_mf) < 4 * FOLD_SD)
checks["well-mixed: stable before the fold, unstable after it (the saddle branch)"] = (
    wm.stability[0] == "stable" and wm.stability[-1] == "unstable"
    and wm.states[-1][0] > theta_fold_mf[1])
checks[f"lattice: continuation turns at one fold, y = {lat_fold:.4f}, stable before, "
       "unstable after"] = (np.isfinite(lat_fold) and lat.stability[0] == "stable"
                            and lat.stability[-1] == "unstable")
# The reactive state cannot outlive the fold: brute force leaves it at or before it.
checks[f"lattice: brute-force y2 = {lat_y2:.4f} <= coarse fold {lat_fold:.4f} (+ lattice "
       f"size error {Y2_SIZE_ERROR})"] = lat_y2 <= lat_fold + Y2_SIZE_ERROR
checks[f"lattice: coarse y1 = {coarse_y1:.4f} within the lattice-size error "
       f"{Y1_SIZE_ERROR} + 2 se of brute force {lat_y1:.4f}"] = (
    abs(coarse_y1 - lat_y1) < Y1_SIZE_ERROR + 2 * coarse_y1_error)
# -

# ## The bifurcation diagram

# +
output = Path(args.output)
if comm.rank == 0:
    output.mkdir(parents=True, exist_ok=True)

    def table(branch):
        return np.column_stack([branch.parameters, branch.states.reshape(-1, 2),
                                np.abs(branch.eigenvalues).max(axis=1)])

    np.savez(output / "bifurcation.npz", zgb_y=zgb_ys, zgb_mean=zgb_mean, zgb_error=zgb_error,
             lattice_y=lat_ys, lattice_mean=lat_mean, lattice_error=lat_error,
             lattice_branch=table(lat), lattice_branch_down=down,
             well_mixed_branch=table(wm),
             lattice_fold=lat_fold, well_mixed_fold=wm_fold, mean_field_fold=y_fold_mf,
             multiplier_y=Y_MULT, multiplier=mult, coarse_y1=coarse_y1,
             brute_force_y1=lat_y1, brute_force_y2=lat_y2)
    say(f"wrote data    {output / 'bifurcation.npz'}")
    if not args.no_png:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt

        fig, axes = plt.subplots(1, 3, figsize=(16.0, 5.0))
        colors = {"CO": "C3", "O": "C0"}

        def branch_lines(ax, branch, fold, label=True):
            # Segments between consecutive points: solid if both are stable, else dashed.
            y, stable = branch.parameters, branch.stable
            for k, name in ((0, "CO"), (1, "O")):
                th = branch.states[:, k]
                for i in range(len(y) - 1):
                    both = stable[i] and stable[i + 1]
                    ax.plot(y[i: i + 2], th[i: i + 2], "-" if both else "--",
                            color=colors[name], lw=1.6)
                ax.plot(y[stable], th[stable], "o", ms=4, color=colors[name],
                        label=rf"coarse stable $\theta_{{{name}}}$" if label else None)
                ax.plot(y[~stable], th[~stable], "s", ms=4, mfc="white", color=colors[name],
                        label=rf"coarse unstable $\theta_{{{name}}}$" if label else None)
            if np.isfinite(fold):
                ax.axvline(fold, color="k", ls="-.", lw=0.8)

        # (a) the lattice with mobile CO: both transitions.
        ax = axes[0]
        for k, name in ((1, "CO"), (2, "O")):
            ax.errorbar(lat_ys, lat_mean[:, k], yerr=2 * lat_error[:, k], fmt="x", ms=5,
                        color=colors[name], alpha=0.6,
                        label=rf"brute-force KMC $\theta_{{{name}}}$ ({L}$^2$)")
        branch_lines(ax, lat, lat_fold)
        for k, name in ((1, "CO"), (2, "O")):
            ax.plot(np.r_[down[:, 0], lat.parameters[0]], np.r_[down[:, k], lat.states[0, k - 1]],
                    "-", color=colors[name], lw=1.6)
            ax.plot(down[:, 0], down[:, k], "o", ms=4, color=colors[name])
        stable_o = mult[:, 0] < 1
        ax.plot(Y_MULT[stable_o], np.ones(stable_o.sum()), "-", color=colors["O"], lw=3,
                alpha=0.5, label=r"O-poisoned, stable ($\mu < 1$)")
        ax.plot(Y_MULT[~stable_o], np.ones((~stable_o).sum()), ":", color=colors["O"], lw=3,
                alpha=0.5, label=r"O-poisoned, unstable ($\mu > 1$)")
        ax.plot([0.3, 0.52], [1.0, 1.0], "-", color=colors["CO"], lw=1, alpha=0.4,
                label="CO-poisoned (absorbing)")
        ax.axvline(coarse_y1, color="k", ls=":", lw=0.8)
        ax.text(coarse_y1, 1.03, f"$y_1$ = {coarse_y1:.3f}", ha="center", fontsize=8)
        ax.text(lat_fold, 1.03, f"fold {lat_fold:.3f}", ha="center", fontsize=8)
        ax.set_title(f"lattice ZGB, k = {K:g}, CO hops D = {D:g} (coarse: {LAT_SIDE}$^2$, "
                     f"{LAT_REPLICAS} replicas, H = {HORIZON:g})", fontsize=9)
        ax.set_xlim(0.3, 0.52)

        # (b) well-mixed: coarse branch against the exact mean-field curve.
        ax = axes[1]
        grid = np.linspace(0.3, y_fold_mf, 400)
        mf = np.array([zgb_mean_field_states(y, reaction_rate=K) for y in grid[:-1]])
        for k in (1, 2):
            ax.plot(grid[:-1], mf[:, 0, k], "-", color="0.6", lw=4, alpha=0.5)
            ax.plot(grid[:-1], mf[:, 1, k], "--", color="0.6", lw=2, alpha=0.7)
        ax.plot([], [], "-", color="0.6", lw=4, alpha=0.5, label="mean field, stable (exact)")
        ax.plot([], [], "--", color="0.6", lw=2, label="mean field, saddle (exact)")
        branch_lines(ax, wm, wm_fold)
        ax.plot([y_fold_mf], [theta_fold_mf[1]], "k*", ms=10, label="mean-field fold (exact)")
        ax.text(wm_fold, 1.03, f"coarse fold {wm_fold:.4f}", ha="center", fontsize=8)
        ax.set_title(f"well-mixed limit, k = {K:g} (coarse: {WM_SIDE}$^2$, {WM_REPLICAS} "
                     f"replicas)", fontsize=9)
        ax.set_xlim(0.3, 0.52)

        # (c) the original model, brute force against the published transitions.
        ax = axes[2]
        for k, name in ((1, "CO"), (2, "O")):
            ax.errorbar(zgb_ys, zgb_mean[:, k], yerr=2 * zgb_error[:, k], fmt="o", ms=4,
                        color=colors[name], label=rf"brute-force KMC $\theta_{{{name}}}$")
        for y_pub, name in ((Y1, "$y_1$"), (Y2, "$y_2$")):
            ax.axvline(y_pub, color="0.5", ls=":", lw=1)
            ax.text(y_pub, 1.02, f"{name} (published)", ha="center", fontsize=8)
        ax.set_title(f"original ZGB (instantaneous reaction), {L}$^2$, {REPLICAS} replicas",
                     fontsize=9)
        for ax in axes:
            ax.set_xlabel("CO fraction $y$")
            ax.set_ylabel("coverage")
            ax.set_ylim(-0.02, 1.42)
            ax.set_yticks(np.linspace(0, 1, 6))
            ax.legend(fontsize=6.5, loc="upper center", ncol=3, columnspacing=1.0)
        fig.tight_layout()
        fig.savefig(output / "bifurcation.png", dpi=120)
        plt.close(fig)
        say(f"wrote picture {output / 'bifurcation.png'}")

for text, ok in checks.items():
    say(f"  [{'ok' if ok else 'FAILED'}] {text}")
say(f"total {time.perf_counter() - start:.1f} s")
if not all(checks.values()):
    sys.exit("demo_kmc_co_oxidation: a check FAILED")
say("demo_kmc_co_oxidation: all checks passed")
# -
