# ---
# jupyter:
#   jupytext:
#     text_representation:
#       extension: .py
#       format_name: light
# ---

# # Kinetic closure of a gas flow: HMM with a BGK micro solver against the full kinetic solution
#
# A gas flows between two plates at rest, driven by a body force $g$ along the channel
# (force-driven Poiseuille flow). The macro problem is the momentum balance
# $\mathrm{d}\sigma_{xy}/\mathrm{d}y + \rho g = 0$ on a 1D DOLFINx mesh across the channel;
# at every quadrature point of every Newton iterate the shear stress comes from the
# homogeneous BGK micro problem (`BGKClosure`: the steady BGK equation under the local
# shear rate, on a Gauss–Hermite velocity grid), with $\tau = \mu(T)/p$. The walls carry
# the first-order Maxwell slip with the BGK slip coefficient 1.016191.
#
# The reference is the **full kinetic solution** of the same channel: the linearised BGK
# equation between diffuse walls on a discrete-velocity grid (`LinearizedBGKChannel`).
# Two rarefaction parameters $\delta = pH/(\mu v_0)$ ($v_0 = \sqrt{2k_BT/m}$): $\delta = 10$
# ($\mathrm{Kn} = \sqrt\pi/2\delta = 0.089$) and $\delta = 2$ ($\mathrm{Kn} = 0.44$).
# The plot shows the Navier–Stokes parabola (no slip), the HMM closure and the kinetic
# solution, in units of $gH/v_0$, and where the local closure fails: the error of the HMM
# shear-rate profile (velocities relative to the centre, so that the wall condition drops
# out) against the distance from the wall in mean free paths: the Knudsen layers.
#
# Run: `python3 demos/demo_bgk_channel.py` (`mpirun -n 2` works; `--quick` is the test size).

# +
import argparse
import math
import sys
from pathlib import Path

import numpy as np
from mpi4py import MPI

from hmm_fem.macro import BGK_VISCOUS_SLIP, ChannelFlow
from hmm_fem.micro.kinetic import BGKClosure, LinearizedBGKChannel, knudsen_number

parser = argparse.ArgumentParser(description="BGK closure of a channel flow vs the full DVM")
parser.add_argument("--quick", action="store_true", help="small sizes (used by the tests)")
parser.add_argument("--output", default="results/bgk_channel", help="output folder")
parser.add_argument("--no-png", action="store_true", help="skip the picture")
args = parser.parse_args()
comm = MPI.COMM_WORLD
say = print if comm.rank == 0 else (lambda *a, **k: None)
output = Path(args.output)

DELTAS = (10.0, 2.0)
CELLS = 8 if args.quick else 32  # macro cells (P2)
DVM_CELLS, DVM_VELOCITIES = (400, 32) if args.quick else (800, 48)
G = 1e-4  # body force: a* at the wall = gH/(2 k_B T/m) = 5e-5, the linear regime
V0 = math.sqrt(2.0)  # p = T = H = m = k_B = 1
# -

# ## HMM and the kinetic reference at each Knudsen number

# +
checks = {}
results = {}
for delta in DELTAS:
    mu = 1.0 / (delta * V0)
    closure = BGKClosure(mu, omega=0.5, dim=3)
    flow = ChannelFlow(closure, force=G, cells=CELLS, slip=BGK_VISCOUS_SLIP, comm=comm)
    report = flow.solve()
    y, u, _ = flow.profile()
    w_hmm = u * V0 / G
    rate_hmm = flow.flow_rate() * V0 / G
    flow.write(output / f"channel_delta{delta:g}.bp")
    dvm = LinearizedBGKChannel(DVM_CELLS, DVM_VELOCITIES).poiseuille(delta)
    yk = dvm.y + 0.5
    w_ns = delta * yk * (1.0 - yk)  # no slip, in units of gH/v0
    kinetic = np.interp(y, yk, dvm.velocity)
    centre = np.argmin(np.abs(y - 0.5))
    scale = dvm.velocity.max()
    shape_error = np.abs((w_hmm - w_hmm[centre]) - (kinetic - kinetic[centre])) / scale
    error = np.abs(w_hmm - kinetic) / scale
    mean_free_path = knudsen_number(delta)  # in units of H
    distance = np.minimum(y, 1.0 - y) / mean_free_path
    results[delta] = dict(y=y, w=w_hmm, yk=yk, dvm=dvm.velocity, ns=w_ns, distance=distance,
                          shape_error=shape_error, error=error)
    say(f"delta = {delta:g} (Kn = {knudsen_number(delta):.3f}): {report}")
    say(f"  flow rate G_P: NS {delta / 6:.4f}, HMM + slip {rate_hmm:.4f}, "
        f"DVM {dvm.flow_rate:.4f} (HMM {100 * (rate_hmm / dvm.flow_rate - 1):+.2f} %)")
    say("  distance from wall (mean free paths) | HMM error: shear-rate profile, velocity")
    for d in (0.0, 0.5, 1.0, 2.0, 4.0):
        k = np.argmin(np.abs(distance - d))
        say(f"    {distance[k]:5.2f} | {shape_error[k]:.2e}  {error[k]:.2e}")
    checks[f"delta = {delta:g}: HMM + slip flow rate = delta/6 + zeta (1e-5)"] = bool(
        abs(rate_hmm / (delta / 6 + BGK_VISCOUS_SLIP) - 1) < 1e-5)
    # (away from the walls, where the distribution is sharp: differences of the shear)
    slope = np.gradient(dvm.shear, dvm.y)[np.abs(dvm.y) < 0.4]
    checks[f"delta = {delta:g}: DVM momentum balance d<c_y psi>/dy' = 1 (1e-3)"] = bool(
        np.abs(slope - 1).max() < 1e-3)
    checks[f"delta = {delta:g}: the kinetic flow exceeds Navier-Stokes (rarefaction)"] = bool(
        dvm.flow_rate > delta / 6 + 0.5)
    results[delta]["rate"] = (delta / 6, rate_hmm, dvm.flow_rate)
    flow.destroy()  # collective, now (not whenever the garbage collector runs on each rank)

bulk10 = results[10.0]["shape_error"][results[10.0]["distance"] > 4].max()
wall10 = results[10.0]["shape_error"][results[10.0]["distance"] < 0.5].max()
checks[f"delta = 10: the closure holds beyond 4 mean free paths ({bulk10:.1e} < 1e-2) "
       f"and fails near the wall ({wall10:.1e} > 5e-2)"] = bool(bulk10 < 1e-2 and wall10 > 5e-2)
gap = [abs(results[d]["rate"][1] / results[d]["rate"][2] - 1) for d in DELTAS]
checks["the HMM flow rate error grows with Kn"] = bool(gap[1] > gap[0])
# -

# ## The picture

# +
if comm.rank == 0 and not args.no_png:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 3, figsize=(13.5, 4.2))
    for ax, delta in zip(axes[:2], DELTAS):
        r = results[delta]
        ax.plot(r["yk"], r["ns"], "--", color="0.4", label="Navier–Stokes, no slip")
        ax.plot(r["y"], r["w"], "o-", ms=3, markevery=4, color="C0",
                label="HMM: BGK closure + slip")
        ax.plot(r["yk"], r["dvm"], color="C3", lw=1.5, label="full kinetic (DVM)")
        ns, hmm, kin = r["rate"]
        ax.set_title(f"δ = {delta:g}, Kn = {knudsen_number(delta):.3f}: G_P = {ns:.3f} (NS), "
                     f"{hmm:.3f} (HMM), {kin:.3f} (DVM)", fontsize=9)
        ax.set_xlabel("y / H")
        ax.set_ylabel("u v0 / (g H)")
        ax.legend(fontsize=8, loc="lower center")
    ax = axes[2]
    for delta, color in zip(DELTAS, ("C0", "C2")):
        r = results[delta]
        half = r["y"] < 0.5 - 1e-9  # the shape error vanishes at the centre by construction
        ax.semilogy(r["distance"][half], r["shape_error"][half], "o-", ms=3,
                    color=color, label=f"δ = {delta:g}: shear-rate profile")
        ax.semilogy(r["distance"][half], r["error"][half], ":", color=color,
                    label=f"δ = {delta:g}: velocity (first-order slip)")
    ax.set_ylim(1e-4, 1.0)
    ax.set_xlabel("distance from the wall (mean free paths)")
    ax.set_ylabel("|HMM − DVM| / max DVM")
    ax.set_title("where the local closure fails: Knudsen layers", fontsize=9)
    ax.legend(fontsize=8, loc="upper right")
    fig.tight_layout()
    output.mkdir(parents=True, exist_ok=True)
    fig.savefig(output / "bgk_channel.png", dpi=110)
    plt.close(fig)
# -

for name, ok in checks.items():
    say(f"[{'ok' if ok else 'FAILED'}] {name}")
if not all(checks.values()):
    sys.exit(1)
say("all checks passed")
