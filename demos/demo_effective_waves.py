# ---
# jupyter:
#   jupytext:
#     text_representation:
#       extension: .py
#       format_name: light
# ---

# # Effective wave speeds of composites: the microstructure makes the material a crystal
#
# Long elastic waves in a composite see the homogenised stiffness $C^*$ and the average
# density $\bar\rho$. Their phase velocities solve the Christoffel problem
# $\Gamma(n)\,a = \bar\rho v^2 a$ with $\Gamma_{ik} = C^*_{ijkl} n_j n_l$, and depend
# on the direction $n$ even when every phase is isotropic.
#
# Two composites:
#
# 1. a 3D laminate (layers normal to $x$, $E = 1, 10$, $\nu = 0.3, 0.2$, densities
#    1 and 2.5, half and half): $C^*$ from the periodic cell is checked against the
#    exact Backus (1962) formulas, and the speeds along and across the layers against
#    $\sqrt{C^*/\bar\rho}$;
# 2. a square array of stiff fibres (plane strain, $f = 0.4$): the speeds have the
#    four-fold symmetry of the array, which the demo checks.
#
# Run: `hmm-fem demo effective_waves` or `python3 demos/demo_effective_waves.py`.

# +
import argparse
import sys
from pathlib import Path

import numpy as np
from mpi4py import MPI

from hmm_fem import cells, references
from hmm_fem.cells import ElasticityCell
from hmm_fem.voigt import stiffness_to_tensor, tensor_to_stiffness
from hmm_fem.waves import effective_density, phase_velocities, plot_phase_velocities

parser = argparse.ArgumentParser(description="effective wave speeds demo")
parser.add_argument("--quick", action="store_true", help="coarse meshes (used by the tests)")
parser.add_argument("--output", default="results/effective_waves", help="output folder")
args = parser.parse_args()
output = Path(args.output)
writer = MPI.COMM_WORLD.rank == 0  # cells live on COMM_SELF: every rank computes, one writes
checks = {}
# -

# ## 1. The laminate
#
# Backus gives $C^*$ for layers normal to $x_3$; our laminate has its layers normal
# to $x$, so the exact tensor is rotated ($x_3 \to x$) before the comparison.

# +
E, nu, rho, f = (1.0, 10.0), (0.3, 0.2), (1.0, 2.5), 0.5
laminate = cells.laminate(f, dim=3, mesh_size=0.5 if args.quick else 0.25)
C_cell = ElasticityCell(laminate, {"matrix": (E[0], nu[0]), "inclusion": (E[1], nu[1])})
C = C_cell.effective_tensor()
C_cell.destroy()
axes = [2, 0, 1]  # new x = old x3, new y = old x1, new z = old x2
exact = tensor_to_stiffness(
    stiffness_to_tensor(references.backus_laminate(E, nu, [1 - f, f]))[
        np.ix_(axes, axes, axes, axes)
    ]
)
rho_bar = effective_density(rho, [1 - f, f])
across, along = phase_velocities(C, rho_bar, [[1.0, 0.0, 0.0], [0.0, 1.0, 0.0]])["speeds"]
error = np.abs(C - exact).max() / np.abs(exact).max()
checks[f"laminate C* = Backus (max relative difference {error:.1e})"] = error < 1e-6
checks["P wave across the layers: sqrt(C*_xx / rho)"] = np.isclose(
    across[0], np.sqrt(exact[0, 0] / rho_bar), rtol=1e-6
)
checks["P wave along the layers: sqrt(C*_yy / rho)"] = np.isclose(
    along[0], np.sqrt(exact[1, 1] / rho_bar), rtol=1e-6
)
print(f"laminate: v_P across {across[0]:.4f}, along {along[0]:.4f}; v_S across {across[1]:.4f}")
# -

# ## 2. The fibre array

# +
fibres = cells.square(0.4, mesh_size=0.08 if args.quick else None)
F_cell = ElasticityCell(fibres, {"matrix": (1.0, 0.35), "inclusion": (20.0, 0.2)})
C2 = F_cell.effective_tensor()
F_cell.destroy()
rho2 = effective_density([1.2, 2.0], [1 - fibres.volume_fraction, fibres.volume_fraction])
theta = np.linspace(0, np.pi / 2, 7)
speeds = phase_velocities(C2, rho2, np.c_[np.cos(theta), np.sin(theta)])["speeds"]
turned = phase_velocities(C2, rho2, np.c_[-np.sin(theta), np.cos(theta)])["speeds"]
anisotropy = speeds[:, 0].max() / speeds[:, 0].min() - 1
checks["fibre array: four-fold symmetry of the speeds"] = np.allclose(speeds, turned, rtol=1e-3)
checks[f"fibre array: anisotropic (v_P varies by {anisotropy:.1%})"] = anisotropy > 1e-3
# -

# ## Pictures

# +
if writer:
    for path in (
        plot_phase_velocities(
            C,
            rho_bar,
            output / "laminate_speeds.png",
            plane=(0, 1),
            title="laminate, x-y plane (layers normal to x)",
        ),
        plot_phase_velocities(
            C2, rho2, output / "fibre_array_speeds.png", title="square fibre array (plane strain)"
        ),
    ):
        print(f"wrote picture {path}")
for text, ok in checks.items():
    print(f"  [{'ok' if ok else 'FAILED'}] {text}")
if not all(checks.values()):
    sys.exit("demo_effective_waves: a check FAILED")
print("demo_effective_waves: all checks passed")
# -
