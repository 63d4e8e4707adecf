# ---
# jupyter:
#   jupytext:
#     text_representation:
#       extension: .py
#       format_name: light
# ---

# # A heat pulse through a composite with slow inclusions: memory in homogenisation
#
# A plate $[0, 1]^2$ is a periodic composite (period $\varepsilon$): a conducting
# matrix ($k = 1$, the "fractures") around square inclusions of side $\varepsilon/2$
# that conduct very poorly, $k_b = \varepsilon^2 D$ with $D = 0.05$. Both phases store
# heat ($c = 1$). The lower half of the left side is held at $T = 1$ for $t < 0.1$ and
# at $T = 0$ afterwards: a heat pulse enters through the matrix, the inclusions soak
# it up slowly and give it back later.
#
# The diffusion time of an inclusion, $1/\lambda_1 = c_b L^2/(2\pi^2 D) \approx 0.25$
# (cell units, $L = 1/2$), is that of the pulse, whatever $\varepsilon$: the
# double-porosity scaling of Arbogast, Douglas and Hornung (1990). A quasi-static
# effective law cannot see it. Four models of the temperature at a probe:
#
# 1. the **DNS**: the plate meshed down to every inclusion;
# 2. the **quasi-static FE²**: $\langle c\rangle\,\partial_t T = \nabla\cdot(K^*\nabla T)$
#    with $K^*$ from a steady periodic cell at each quadrature point;
# 3. the **transient-micro HMM** (Abdulle and E, 2003): the flux from a short transient
#    cell simulation started from the local macro gradient, averaged over a window (here
#    the macro step, $\Delta t/\varepsilon^2$ in cell time) with a smoothing kernel. It
#    captures the relaxation of the flux in the cell, not the heat the inclusions store:
#    here it agrees with the quasi-static FE²;
# 4. the **double-porosity memory model**: at every quadrature point one inclusion
#    (block) driven by the local macro temperature, its temperatures the point's
#    history; the heat it takes up is the memory term of the macro law.
#
# **Self-checks.** The memory model follows the DNS at the probe, the quasi-static
# models miss it by several times more; the HMM's flux equals the quasi-static one to its
# window error; the relaxation time the block simulation measures is that of the block's
# leading eigenvalue, which tends to $2\pi^2 D/L^2$.
#
# Run: `python3 demos/demo_transient_composite.py` (`mpirun -n 2` works too; `--quick`
# is the small size of the test suite).

# +
import argparse
import sys
from pathlib import Path

import numpy as np
from dolfinx import fem, io, mesh
from mpi4py import MPI

from hmm_fem.cells import ConductivityModel
from hmm_fem.cells.transient import block_cell
from hmm_fem.macro import TransientHeat
from hmm_fem.macro.double_porosity import DoublePorosityHeat
from hmm_fem.macro.fine_scale import FineScaleHeat, point_values
from hmm_fem.micro.cell_models import BlockExchangeModel, TransientConductivityModel

parser = argparse.ArgumentParser(description="transient composite demo")
parser.add_argument("--quick", action="store_true", help="small size (used by the test suite)")
parser.add_argument("--output", default="results/transient_composite", help="output folder")
args = parser.parse_args()
comm = MPI.COMM_WORLD
say = print if comm.rank == 0 else (lambda *a, **k: None)
output = Path(args.output)

eps = 1 / 8 if args.quick else 1 / 16
n_macro = 12 if args.quick else 16
dt = 0.03 if args.quick else 0.015
steps = 20 if args.quick else 40
D, side, cells_per_period = 0.05, 0.5, 8
probe = [0.5, 0.25]  # a period corner: in the matrix for every eps = 1/2^k


def pulse(t):
    return 1.0 if t <= 0.1 + 1e-12 else 0.0


def heated(x):
    return np.isclose(x[0], 0.0) & (x[1] <= 0.5 + 1e-12)


# -

# ## The DNS
#
# Eight mesh cells per period; backward Euler, factorised once.

# +
dns = FineScaleHeat(
    comm,
    (1.0, 1.0),
    eps,
    cells_per_period,
    side,
    (1.0, eps**2 * D),
    (1.0, 1.0),
    dt,
    dirichlet=[(heated, pulse)],
)
curves = {"DNS": [0.0]}
dns_writer = io.VTXWriter(comm, output / "dns.bp", [dns.u], engine="BP4")
for _ in range(steps):
    dns.step()
    curves["DNS"].append(point_values(dns.u, [probe])[0])
    dns_writer.write(dns.time)
dns_writer.close()
say(f"DNS: eps = 1/{round(1 / eps)}, {dns.num_dofs} dofs, {dns.seconds:.2f} s")
# -

# ## The three homogenised models
#
# One cell (matrix and inclusion, the same mesh as a DNS period). The quasi-static FE²
# and the HMM flux see the inclusion's tiny conductivity; the memory model's flux is
# that of the matrix alone (insulating blocks), its storage that of the matrix plus the
# blocks' exchange.

# +
cell = block_cell(cells_per_period, side)
phases = {"matrix": 1.0, "inclusion": eps**2 * D}
plate = mesh.create_unit_square(comm, n_macro, n_macro)
boundary_value = fem.Constant(plate, 0.0)  # the pulse, set before every step
common = {"dt": dt, "dirichlet": [(heated, boundary_value)]}
# The HMM's window is the macro step seen from a cell of side eps (dt/eps^2 cell units,
# read from the solve context): one short simulation per macro step, shared by every point.
hmm_model = TransientConductivityModel(cell, phases, window="step", period=eps, kernel="smooth")
models = {
    "quasi-static FE²": TransientHeat(plate, ConductivityModel(cell, phases), **common),
    "transient-micro HMM": TransientHeat(plate, hmm_model, **common),
    "double porosity (memory)": DoublePorosityHeat(
        plate,
        ConductivityModel(cell, {"matrix": 1.0, "inclusion": 1e-9}),
        BlockExchangeModel(side, D, 1.0, cells_per_side=int(side * cells_per_period)),
        fracture_capacity=1 - side**2,
        **common,
    ),
}
memory = models["double porosity (memory)"]
memory_writer = io.VTXWriter(comm, output / "memory_model.bp", [memory.T], engine="BP4")
for name, heat in models.items():
    curves[name] = [0.0]
    time = 0.0
    for _ in range(steps):
        time += dt
        boundary_value.value = pulse(time)
        heat.step()
        curves[name].append(point_values(heat.T, [probe])[0])
        if heat is memory:
            memory_writer.write(heat.time)
memory_writer.close()
times = dt * np.arange(steps + 1)
curves = {k: np.array(v) for k, v in curves.items()}
for name, heat in models.items():
    say(f"{name}: {heat.statistics.total(comm)}")
# -

# ## Checks against the DNS

# +
peak = curves["DNS"].max()
errors = {k: np.abs(v - curves["DNS"]).max() / peak for k, v in curves.items() if k != "DNS"}
for name, e in errors.items():
    say(f"  max |T - T_DNS| / max T_DNS at the probe, {name}: {e:.3f}")
block = models["double porosity (memory)"].block_model.block
t_exact = 1 / block.exact_leading_eigenvalue()
t_fe, t_measured = block.relaxation_time(), block.measured_relaxation_time()
say(
    f"block relaxation time: exact {t_exact:.4f}, FE eigenvalue {t_fe:.4f}, "
    f"measured {t_measured:.4f}"
)
K_star = models["quasi-static FE²"].effective_conductivity()[0]
window = dt / eps**2
window_error = np.abs(hmm_model.cell_problem.windowed_tensor(window) - K_star).max()
window_error /= np.abs(K_star).max()
say(f"HMM window {window:.2f} (cell time), relative error of its tensor {window_error:.1e}")
memory_error = errors["double porosity (memory)"]
hmm_gap = np.abs(curves["transient-micro HMM"] - curves["quasi-static FE²"]).max()
block_cells = int(side * cells_per_period)
checks = {
    f"memory model within 10 % of the DNS peak ({memory_error:.3f})": memory_error < 0.10,
    "quasi-static FE² misses the DNS by over 2x the memory model's error": errors[
        "quasi-static FE²"
    ]
    > 2 * memory_error,
    "transient-micro HMM = quasi-static FE² to its window error": hmm_gap
    < (2 * window_error + 1e-3) * peak,
    f"measured block relaxation time = FE eigenvalue's ({t_measured:.5f} vs {t_fe:.5f})": abs(
        t_measured / t_fe - 1
    )
    < 1e-3,
    f"FE eigenvalue within 6 % of 2 pi^2 D / L^2 ({block_cells}-cell block)": abs(
        t_fe / t_exact - 1
    )
    < 0.06,
}
for text, ok in checks.items():
    say(f"  [{'ok' if ok else 'FAILED'}] {text}")
# -

# ## Picture
#
# The probe temperature of the four models (`probe.png`); `dns.bp` and
# `memory_model.bp` hold the temperature fields over time for ParaView.

# +
if comm.rank == 0:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 4.2))
    styles = {
        "DNS": ("k", "-", 3),
        "quasi-static FE²": ("C3", "--", 2),
        "transient-micro HMM": ("C1", ":", 2),
        "double porosity (memory)": ("C0", "-", 2),
    }
    for name, (colour, style, width) in styles.items():
        ax.plot(times, curves[name], color=colour, ls=style, lw=width, label=name)
    ax.axvline(0.1, color="0.6", lw=0.8)
    ax.text(0.102, 0.02 * peak, "pulse ends", color="0.4", fontsize=8)
    ax.set_xlabel("time")
    ax.set_ylabel(f"temperature at ({probe[0]}, {probe[1]})")
    ax.set_title(f"heat pulse through a composite with slow inclusions, eps = 1/{round(1 / eps)}")
    ax.legend()
    ax.grid(alpha=0.3)
    fig.tight_layout()
    output.mkdir(parents=True, exist_ok=True)
    fig.savefig(output / "probe.png", dpi=110)
    say(f"wrote {output / 'probe.png'}, {output / 'dns.bp'}, {output / 'memory_model.bp'}")
dns.destroy()

if not all(checks.values()):
    sys.exit("demo_transient_composite: a check FAILED")
say("demo_transient_composite: all checks passed")
# -
