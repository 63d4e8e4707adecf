"""Benchmark: the BGK micro solve against the full kinetic solution of the channel.

Measured, one core, best of ``--repeat`` (median printed too):

* one micro solve of :class:`~hmm_fem.micro.kinetic.BGKClosure` (3D velocity grid, 6
  Gauss–Hermite nodes per direction: 216 velocities): one steady BGK solve with its
  thermostat iteration and the linearised tangent; at a Navier–Stokes state
  (``a* = 1e-3``) and a strongly sheared one (``a* = 0.5``);
* the HMM channel: :class:`~hmm_fem.macro.ChannelFlow` (force-driven Poiseuille flow,
  ``--cells`` P2 cells, 2 quadrature points each, first-order slip) with that closure at
  ``delta = 10``, micro solves included (a fresh closure, no cache from earlier runs);
* the full kinetic solution of the same channel: :class:`LinearizedBGKChannel` (``--dvm-cells``
  uniform cells, ``2 * --dvm-velocities`` discrete velocities), direct solve.

The last line is ``micro/full kinetic time: X.XXX``: one micro solve (at ``a* = 1e-3``) over
one full kinetic channel solve. Run: ``docker/run python3 benchmarks/bgk.py``.
"""

import argparse
import math

parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
parser.add_argument("--cells", type=int, default=32, help="macro cells (default 32)")
parser.add_argument("--dvm-cells", type=int, default=800, help="DVM cells (default 800)")
parser.add_argument("--dvm-velocities", type=int, default=48, help="DVM velocities per half")
parser.add_argument("--repeat", type=int, default=5, help="timed runs (best is kept)")
args = parser.parse_args()

import numpy as np  # noqa: E402
from _common import best  # noqa: E402

from hmm_fem.macro import BGK_VISCOUS_SLIP, ChannelFlow  # noqa: E402
from hmm_fem.micro.kinetic import BGKClosure, LinearizedBGKChannel  # noqa: E402

DELTA = 10.0
MU = 1.0 / (DELTA * math.sqrt(2.0))  # p = T = H = 1
closure = BGKClosure(MU, dim=3, n_velocity=6)
micro = {}
for a_star in (1e-3, 0.5):
    state = np.array([a_star])
    closure.solve(state)  # warm-up
    micro[a_star] = best(lambda state=state: closure.solve(state), args.repeat)
    print(f"micro solve (216 velocities, with tangent) at a* = {a_star:g}: "
          f"{1e3 * micro[a_star][0]:.2f} ms (median {1e3 * micro[a_star][1]:.2f} ms)")

channel = LinearizedBGKChannel(args.dvm_cells, args.dvm_velocities)
channel.poiseuille(DELTA)
full = best(lambda: channel.poiseuille(DELTA), args.repeat)
rate = channel.poiseuille(DELTA).flow_rate
print(f"full kinetic channel ({args.dvm_cells} cells x {2 * args.dvm_velocities} velocities, "
      f"delta = {DELTA:g}): {1e3 * full[0]:.2f} ms (median {1e3 * full[1]:.2f} ms), "
      f"G_P = {rate:.5f}")


def hmm_solve():
    flow = ChannelFlow(BGKClosure(MU, dim=3, n_velocity=6), force=1e-4, cells=args.cells,
                       slip=BGK_VISCOUS_SLIP)
    report = flow.solve()
    flow.destroy()
    return report


hmm_solve()  # JIT compilation of the forms
reports = []
hmm = best(lambda: reports.append(hmm_solve()), max(1, args.repeat // 2))
report = reports[-1]
print(f"HMM channel ({args.cells} P2 cells, {2 * args.cells} micro points): "
      f"{hmm[0]:.3f} s (median {hmm[1]:.3f} s), {report.statistics.micro_solves} micro solves, "
      f"{report.micro_seconds:.3f} s in micro solves")
print(f"HMM channel/full kinetic time: {hmm[0] / full[0]:.1f}")
print(f"micro/full kinetic time: {micro[1e-3][0] / full[0]:.3f}")
