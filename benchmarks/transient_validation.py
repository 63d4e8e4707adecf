"""Validation of the transient micro models against the DNS (issue 12; `make validate`).

Prints the error tables (relative L2 against the DNS at the final time, 1D strip and 2D,
eps = 1/8, 1/16, 1/32), the effect of the HMM window and kernel, the block relaxation
times (exact, FE eigenvalue, measured by the micro simulation), and writes the probe
curves of the double-porosity case to ``results/transient_validation.png``.

    python3 benchmarks/transient_validation.py [--quick] [--output DIR]
"""

from __future__ import annotations

import argparse
import os
import time

import numpy as np
from _transient import (
    BLOCK,
    CELLS_PER_PERIOD,
    D_BLOCK,
    SLOW,
    error,
    run_dns,
    run_macro,
)
from mpi4py import MPI

from hmm_fem.cells import ConductivityCell
from hmm_fem.cells.transient import DiffusionBlock, TransientConductivityCell, block_cell

DT = 0.01
STEPS = 30


def say(*args):
    if MPI.COMM_WORLD.rank == 0:
        print(*args, flush=True)


def hmm_tables(dims, epsilons, n_macro):
    say("\n## HMM (slow inclusions k = 0.1, standard scaling): relative L2 error against the DNS")
    say(
        "| dim | eps | DNS dofs | DNS s | quasi-static FE² | HMM (8 t_r, smooth) "
        "| HMM (1 t_r, uniform) |"
    )
    say("|---|---|---|---|---|---|---|")
    cell = TransientConductivityCell(block_cell(CELLS_PER_PERIOD, BLOCK), SLOW)
    t_r = cell.relaxation_time()
    for dim in dims:
        models = {
            "quasi-static": run_macro("quasi-static", dim, DT, STEPS, n_macro[dim]),
            "hmm": run_macro("hmm", dim, DT, STEPS, n_macro[dim]),
            "short": run_macro("hmm", dim, DT, STEPS, n_macro[dim], window=t_r, kernel="uniform"),
        }
        for eps in epsilons:
            dns = run_dns(dim, eps, (1.0, 0.1), DT, STEPS)
            e = {k: error(dns, m) for k, m in models.items()}
            say(
                f"| {dim}D | 1/{round(1 / eps)} | {dns['dofs']} | {dns['seconds']:.2f} | "
                f"{e['quasi-static']:.2e} | {e['hmm']:.2e} | {e['short']:.2e} |"
            )
            dns["dns"].destroy()
        say(
            f"|   {dim}D macro | | | | {models['quasi-static']['seconds']:.2f} s | "
            f"{models['hmm']['seconds']:.2f} s ({models['hmm']['micro_solves']} micro solve) | |"
        )


def window_table(epsilon, n_macro):
    say(
        f"\n## HMM window and kernel (1D, eps = 1/{round(1 / epsilon)}): |K_tau - K*|/K* and "
        "the L2 error against the DNS"
    )
    cell = block_cell(CELLS_PER_PERIOD, BLOCK)
    steady = ConductivityCell(cell, SLOW).effective_tensor()[0, 0]
    transient = TransientConductivityCell(cell, SLOW)
    t_r = transient.relaxation_time()
    say(f"cell relaxation time t_r = {t_r:.4f} (cell units; eps^2 t_r physical), K* = {steady:.6f}")
    dns = run_dns(1, epsilon, (1.0, 0.1), DT, STEPS)
    say("| window / t_r | kernel | (K_tau - K*)/K* | L2 error vs DNS |")
    say("|---|---|---|---|")
    for multiple in (0.5, 1, 2, 4, 8, 16):
        for kernel in ("uniform", "linear", "smooth"):
            K = transient.windowed_tensor(multiple * t_r, kernel, 64)[0, 0]
            run = run_macro("hmm", 1, DT, STEPS, n_macro, window=multiple * t_r, kernel=kernel)
            say(f"| {multiple} | {kernel} | {(K - steady) / steady:.2e} | {error(dns, run):.2e} |")
    quasi = run_macro("quasi-static", 1, DT, STEPS, n_macro)
    say(f"| quasi-static | | 0 | {error(dns, quasi):.2e} |")
    dns["dns"].destroy()


def relaxation_table():
    say("\n## Block relaxation time (side 0.5, D = 0.05, c_b = 1): 1/lambda_1")
    say("| block mesh | exact 1/(2 pi^2 D/L^2) | FE eigenvalue | measured by the micro run |")
    say("|---|---|---|---|")
    for n in (4, 8, 16, 32):
        block = DiffusionBlock(BLOCK, D_BLOCK, 1.0, n)
        say(
            f"| {n} x {n} | {1 / block.exact_leading_eigenvalue():.5f} | "
            f"{block.relaxation_time():.5f} | {block.measured_relaxation_time():.5f} |"
        )


def double_porosity_tables(dims, epsilons, n_macro, output):
    say(
        f"\n## Double porosity (block conductivity eps^2 D, D = {D_BLOCK}): relative L2 error "
        "in the fractures against the DNS"
    )
    say(
        "| dim | eps | DNS s | memory model | quasi-static (blocks in equilibrium) "
        "| fracture-only |"
    )
    say("|---|---|---|---|---|---|")
    curves = {}
    for dim in dims:
        models = {
            k: run_macro(k, dim, DT, STEPS, n_macro[dim])
            for k in ("memory", "quasi-static-dp", "fracture-only")
        }
        for eps in epsilons:
            dns = run_dns(dim, eps, (1.0, eps**2 * D_BLOCK), DT, STEPS)
            e = {k: error(dns, m, fractures_only=True) for k, m in models.items()}
            say(
                f"| {dim}D | 1/{round(1 / eps)} | {dns['seconds']:.2f} | {e['memory']:.2e} | "
                f"{e['quasi-static-dp']:.2e} | {e['fracture-only']:.2e} |"
            )
            curves[(dim, eps)] = dns["probe"]
            curves[(dim, eps, "blocks")] = dns["blocks"]
            dns["dns"].destroy()
        for k, m in models.items():
            curves[(dim, k)] = m["probe"]
            curves[(dim, k, "blocks")] = m["blocks"]
        say(
            f"|   {dim}D macro s | | | {models['memory']['seconds']:.2f} | "
            f"{models['quasi-static-dp']['seconds']:.2f} | "
            f"{models['fracture-only']['seconds']:.2f} |"
        )
    if MPI.COMM_WORLD.rank == 0:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt

        times = DT * np.arange(STEPS + 1)
        fig, axes = plt.subplots(2, len(dims), figsize=(6 * len(dims), 8), squeeze=False)
        styles = {
            "memory": ("C0", "-", "memory model"),
            "quasi-static-dp": ("C3", "--", "quasi-static (blocks in equilibrium)"),
            "fracture-only": ("C2", ":", "fracture only"),
        }
        for column, dim in enumerate(dims):
            for row, (suffix, what) in enumerate(
                (
                    ((), "temperature at the probe (fracture)"),
                    (("blocks",), "mean block temperature"),
                )
            ):
                ax = axes[row, column]
                for k, (colour, style, label) in styles.items():
                    ax.plot(
                        times,
                        curves[(dim, k, *suffix)],
                        color=colour,
                        ls=style,
                        lw=3,
                        alpha=0.8,
                        label=label,
                    )
                for eps, marker in zip(epsilons, "o^s"):
                    ax.plot(
                        times,
                        curves[(dim, eps, *suffix)],
                        "k",
                        ls="none",
                        marker=marker,
                        ms=3,
                        label=f"DNS eps = 1/{round(1 / eps)}",
                    )
                ax.set_xlabel("time")
                ax.set_ylabel(what)
                where = "x = 0.25" if dim == 1 else "(0.25, 0.25)"
                ax.set_title(f"double porosity, {dim}D" + (f" (probe {where})" if row == 0 else ""))
                ax.legend(fontsize=8)
                ax.grid(alpha=0.3)
        fig.tight_layout()
        path = os.path.join(output, "transient_validation.png")
        fig.savefig(path, dpi=110)
        say(f"\nwrote {path}")


def limits_table(epsilon, n_macro):
    say(
        f"\n## Limits against the DNS (1D, eps = 1/{round(1 / epsilon)}): relative L2 error in "
        "the fractures"
    )
    say(
        "| D (block conductivity eps^2 D) | cells per period | block time 1/lambda_1 "
        "| memory model | quasi-static | fracture-only |"
    )
    say("|---|---|---|---|---|---|")
    for D, m in ((5.0, 8), (D_BLOCK, 8), (1e-6, 8), (1e-6, 16)):
        laws = {
            k: run_macro(k, 1, DT, STEPS, n_macro, cells_per_period=m)
            for k in ("quasi-static-dp", "fracture-only")
        }
        dns = run_dns(1, epsilon, (1.0, epsilon**2 * D), DT, STEPS, cells_per_period=m)
        memory = run_macro("memory", 1, DT, STEPS, n_macro, diffusivity=D, cells_per_period=m)
        block = memory["heat"].block_model.block
        e = [error(dns, r, fractures_only=True) for r in (memory, *laws.values())]
        say(
            f"| {D:g} | {m} | {block.relaxation_time():.3g} | "
            + " | ".join(f"{v:.2e}" for v in e)
            + " |"
        )
        dns["dns"].destroy()


def main():
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--quick", action="store_true", help="1D only, eps = 1/8 and 1/16")
    parser.add_argument("--output", default="results")
    args = parser.parse_args()
    os.makedirs(args.output, exist_ok=True)
    start = time.perf_counter()
    dims = (1,) if args.quick else (1, 2)
    epsilons = (1 / 8, 1 / 16) if args.quick else (1 / 8, 1 / 16, 1 / 32)
    n_macro = {1: 64, 2: 32}
    relaxation_table()
    hmm_tables(dims, epsilons, n_macro)
    window_table(epsilons[-1], n_macro[1])
    double_porosity_tables(dims, epsilons, n_macro, args.output)
    limits_table(epsilons[-1], n_macro[1])
    say(f"\ntotal {time.perf_counter() - start:.1f} s")


if __name__ == "__main__":
    main()
