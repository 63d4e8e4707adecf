"""Benchmark piece: patch dynamics against the full fine-scale simulation of the same domain.

The same micro simulator (conservative finite differences of u_t = div(a(x/eps) grad u) on
a lattice of 4 intervals per period, backward Euler with the same time step) runs

  * on the whole domain (the full fine-scale simulation, one sparse LU), and
  * in the patches of :class:`hmm_fem.equation_free.PatchDynamics` (coupled implicitly,
    order-4 coupling in 2D, order 6 in 1D), cut from the same medium
    (``cell_origin="global"``, patch edges on mirror planes of the cell),

from the same smooth initial field. Both are timed per coarse step (``coarse_step`` of
coarse time = ``micro_steps_per_coarse_step`` backward-Euler steps), after their set-up
(factorisations) which is reported apart, and both are compared at the end with the
homogenised solution: the exact decay of the mode with K* (2D: the laminate's K* from
``cells.ConductivityCell``; 1D: the harmonic mean), averaged over each patch with the
patch's weights. ``error_*_space`` compares with the backward-Euler decay of the exact
mode instead (the time error both runs share removed).

2D: layers of conductivity 1 and 4 (the cell of ``cells.laminate(0.5)``), eps = 1/120, on
the unit square with u = 0 on its boundary, sin(pi x) sin(2 pi y); patches of 4 periods at
the 121 interior vertices of a 12 x 12 DOLFINx mesh (13 % of the area).
1D: a(y) = 1/(2 + cos 2 pi y), eps = 1/9216, on (0, 1) with u = 0 at the ends, sin(pi x);
8 patches of width 1/144 = 64 periods (6.25 % of the length).

``measure()`` returns the figures; importing this module prints nothing. Run alone:
``docker/run python3 benchmarks/_equation_free_patches.py [--quick]``.
"""

import time

import numpy as np


def _laminate(y1, y2):
    return np.where(np.abs(y1 % 1 - 0.5) < 0.25, 4.0, 1.0) + 0 * y2


def _smooth(y):
    return 1 / (2 + np.cos(2 * np.pi * y))


def _windows(full, micro, centres, u):
    """Averages of the full lattice field over the patch windows, with the patch weights."""
    n, d = full.intervals, full.spacing
    dim = centres.shape[1]
    grid = u.reshape((n + 1,) * dim)
    index = np.rint((centres - (0.5 - full.width / 2)) / d).astype(int)
    half = micro.intervals // 2
    offsets = np.arange(-half, half + 1)
    if dim == 1:
        values = grid[index[:, 0, None] + offsets]
    else:
        i = index[:, 0, None, None] + offsets[:, None]
        j = index[:, 1, None, None] + offsets[None, :]
        values = grid[i, j].reshape(len(centres), -1)
    return values @ micro.weights


def _case(dim, quick):
    import dolfinx
    from mpi4py import MPI

    from hmm_fem.equation_free import PatchDynamics
    from hmm_fem.equation_free.patches import HeterogeneousDiffusion

    if dim == 2:
        from hmm_fem import cells

        problem = cells.ConductivityCell(cells.laminate(0.5, mesh_size=0.1),
                                         {"matrix": 1.0, "inclusion": 4.0})
        K_star = problem.effective_tensor()
        problem.destroy()
        coarse = 6 if quick else 12
        eps = 1 / (10 * coarse)
        micro = HeterogeneousDiffusion(_laminate, period=eps, width=4 * eps, dim=2,
                                       points_per_period=4, cell_origin="global")
        mesh = dolfinx.mesh.create_unit_square(MPI.COMM_SELF, coarse, coarse)
        build = lambda: PatchDynamics.on_mesh(micro, mesh, order=4, dt=dt,  # noqa: E731
                                              coupling="implicit")
        rate = np.pi**2 * (K_star[0, 0] + 4 * K_star[1, 1])
        field = lambda x: np.sin(np.pi * x[..., 0]) * np.sin(2 * np.pi * x[..., 1])  # noqa: E731
        conductivity, dt, coarse_step, coarse_steps = _laminate, 5e-5, 1e-3, 5
        description = (f"2D laminate 1|4, eps=1/{round(1 / eps)}, {coarse}x{coarse} macro "
                       "mesh, order 4")
    else:
        coarse = 8
        eps = 1 / (9 * (256 if quick else 1024))
        micro = HeterogeneousDiffusion(_smooth, period=eps, width=1 / 144,
                                       points_per_period=4, cell_origin="global")
        build = lambda: PatchDynamics.on_interval(  # noqa: E731
            micro, (0.0, 1.0), patches=coarse, periodic=False, order=6, dt=dt,
            coupling="implicit")
        rate = 0.5 * np.pi**2
        field = lambda x: np.sin(np.pi * x)  # noqa: E731
        conductivity, dt, coarse_step, coarse_steps = _smooth, 1e-3, 1e-2, 5
        description = f"1D 1/(2+cos), eps=1/{round(1 / eps)}, 8 patches, order 6"
    steps = round(coarse_step / dt)
    T = coarse_step * coarse_steps

    # Patches: set-up (coupling, factorisations of one step), then coarse steps.
    start = time.perf_counter()
    stepper = build()
    U0 = stepper.restrict(field(stepper.micro_coordinates()))
    stepper.evolve(stepper.lift(U0), 0.0, dt)  # factorises the micro step and the coupling
    setup_patches = time.perf_counter() - start
    start = time.perf_counter()
    U, t = U0, 0.0
    for _ in range(coarse_steps):
        U = stepper(U, t, coarse_step)
        t += coarse_step
    per_step_patches = (time.perf_counter() - start) / coarse_steps

    # Full fine-scale simulation: the same lattice over the whole domain (its edges are the
    # domain boundary, u = 0), the same backward Euler step.
    full = HeterogeneousDiffusion(conductivity, period=eps, width=1.0, dim=dim,
                                  points_per_period=4, cell_origin="global")
    start = time.perf_counter()
    full.prepare(np.full((1, dim), 0.5))
    x = (0.5 + full.points)[None]
    u = field(x[..., 0] if dim == 1 else x)
    u[:, full.edge] = 0.0
    full.step(np.zeros_like(u), 0.0, dt)  # factorises
    setup_full = time.perf_counter() - start
    start = time.perf_counter()
    for _ in range(coarse_steps * steps):
        u = full.step(u, 0.0, dt)
    per_step_full = (time.perf_counter() - start) / coarse_steps
    U_full = _windows(full, micro, stepper.centres, u[0])

    exact = U0 * np.exp(-rate * T)
    backward_euler = U0 * (1 + rate * dt) ** -(coarse_steps * steps)
    scale = np.abs(exact).max()
    return {
        "case": description,
        "covered_fraction": stepper.covered_fraction,
        "patches": len(stepper.centres),
        "micro_points_patches": stepper.micro_points,
        "micro_points_full": full.points.shape[0],
        "dt": dt,
        "coarse_step": coarse_step,
        "micro_steps_per_coarse_step": steps,
        "setup_seconds_patches": setup_patches,
        "setup_seconds_full": setup_full,
        "seconds_per_coarse_step_patches": per_step_patches,
        "seconds_per_coarse_step_full": per_step_full,
        "speedup": per_step_full / per_step_patches,
        "error_patches": float(np.abs(U - exact).max() / scale),
        "error_full": float(np.abs(U_full - exact).max() / scale),
        "error_patches_space": float(np.abs(U - backward_euler).max() / scale),
        "error_full_space": float(np.abs(U_full - backward_euler).max() / scale),
        "patches_vs_full": float(np.abs(U - U_full).max() / scale),
    }


def measure(quick: bool = False) -> dict:
    """Time per coarse step of the patch scheme and of the full fine simulation, 2D and 1D.

    Args:
        quick: Smaller domains (a smoke test, about a second).

    Returns:
        ``{"2d": {...}, "1d": {...}, "speedup_2d": ..., "speedup_1d": ...}``, each case
        with its timings, errors against the homogenised solution, and covered fraction.
    """
    result = {"2d": _case(2, quick), "1d": _case(1, quick)}
    result["speedup_2d"] = result["2d"]["speedup"]
    result["speedup_1d"] = result["1d"]["speedup"]
    return result


def report(result: dict) -> list[str]:
    """Printable lines of a :func:`measure` result."""
    lines = []
    for key in ("2d", "1d"):
        r = result[key]
        ms = {k: 1e3 * r[f"seconds_per_coarse_step_{k}"] for k in ("patches", "full")}
        pc = {k: 100 * r[k] for k in r if k.startswith(("error", "patches_vs"))}
        lines += [
            f"patch dynamics, {r['case']}: {r['patches']} patches cover "
            f"{100 * r['covered_fraction']:.1f} % ({r['micro_points_patches']} of "
            f"{r['micro_points_full']} micro points)",
            f"  per coarse step of {r['coarse_step']:g} ({r['micro_steps_per_coarse_step']} "
            f"backward-Euler steps of {r['dt']:g}): patches {ms['patches']:.1f} ms, full "
            f"{ms['full']:.1f} ms -> {r['speedup']:.1f}x less",
            f"  set-up: patches {r['setup_seconds_patches']:.2f} s, full "
            f"{r['setup_seconds_full']:.2f} s",
            f"  error against the homogenised solution: patches {pc['error_patches']:.2f} %, "
            f"full {pc['error_full']:.2f} % (space only: {pc['error_patches_space']:.2f} %, "
            f"{pc['error_full_space']:.2f} %); patches vs full {pc['patches_vs_full']:.2f} %",
        ]
    return lines


if __name__ == "__main__":
    import argparse

    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawTextHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="small sizes (smoke test)")
    print("\n".join(report(measure(quick=parser.parse_args().quick))))
