"""Cost of the transient-micro HMM against the DNS at equal error (issue 12).

The 2D problem of ``benchmarks/_transient.py`` in the standard scaling (slow inclusions
k = 0.1): the plate at rest heated on two sides, 30 backward-Euler steps of 0.01. At
eps = 1/32 the reference is a DNS with 16 cells per period (263k dofs). The target error
is the HMM's own accuracy at this eps (1.25 x its error on its finest macro mesh: the
homogenisation error O(eps) it cannot beat); the HMM's cost is that of the coarsest macro
mesh reaching it, the DNS's that of the coarsest DNS (4 or 8 cells per period) reaching
it. Wall times include set-up (meshes, forms, factorisations, the micro simulation) and
exclude JIT compilation (a warm-up run first). Then how each cost scales as eps falls.

    python3 benchmarks/transient_micro.py

Last line: ``HMM/DNS cost at 1/32: X.XX`` (target <= 0.2).
"""

from __future__ import annotations

from _transient import error, run_dns, run_macro
from mpi4py import MPI

from hmm_fem.macro.fine_scale import relative_l2_difference

DT, STEPS = 0.01, 30
EPS = 1 / 32
SLOW = (1.0, 0.1)


def say(*args):
    if MPI.COMM_WORLD.rank == 0:
        print(*args, flush=True)


def main():
    # Warm-up: JIT-compile every form once, so that no timing below includes it.
    run_macro("hmm", 2, DT, 1, 4, record=False)
    run_macro("quasi-static", 2, DT, 1, 4, record=False)
    run_dns(2, 1 / 8, SLOW, DT, 1, cells_per_period=4, record=False)["dns"].destroy()

    reference = run_dns(2, EPS, SLOW, DT, STEPS, cells_per_period=16, record=False)
    say(
        f"reference DNS: eps = 1/32, 16 cells per period, {reference['dofs']} dofs, "
        f"{reference['seconds']:.2f} s"
    )
    hmm = {}
    for n in (8, 16, 32):
        run = run_macro("hmm", 2, DT, STEPS, n, record=False)
        hmm[n] = (error(reference, run), run["seconds"], run["micro_solves"])
        say(
            f"HMM macro {n:>2} x {n:<2}: error {hmm[n][0]:.2e}, {hmm[n][1]:.2f} s "
            f"({hmm[n][2]} micro simulation)"
        )
    target = 1.25 * min(e for e, _, _ in hmm.values())
    dns = {}
    for m in (4, 8):
        run = run_dns(2, EPS, SLOW, DT, STEPS, cells_per_period=m, record=False)
        e = relative_l2_difference(reference["dns"].u, run["dns"].u)
        dns[m] = (e, run["seconds"], run["dofs"])
        run["dns"].destroy()
        say(f"DNS {m} cells per period: {run['dofs']} dofs, error {e:.2e}, {run['seconds']:.2f} s")
    reference["dns"].destroy()
    say(f"target error (1.25 x the HMM's best at eps = 1/32): {target:.2e}")
    hmm_cost = min(s for e, s, _ in hmm.values() if e <= target)
    reaching = [s for e, s, _ in dns.values() if e <= target]
    dns_cost = min(reaching) if reaching else reference["seconds"]
    if not reaching:
        say("no coarser DNS reaches the target: the DNS cost is the reference's")

    say("\n| eps | DNS (8 cells/period) dofs | DNS s | HMM s (macro 16 x 16) |")
    say("|---|---|---|---|")
    for eps in (1 / 8, 1 / 16, 1 / 32):
        d = run_dns(2, eps, SLOW, DT, STEPS, record=False)
        h = run_macro("hmm", 2, DT, STEPS, 16, record=False)
        say(f"| 1/{round(1 / eps)} | {d['dofs']} | {d['seconds']:.2f} | {h['seconds']:.2f} |")
        d["dns"].destroy()
    say(
        "(the HMM does not depend on eps: one micro simulation per run; the DNS grows as "
        "eps^-2 in 2D)"
    )
    say(f"\nHMM {hmm_cost:.2f} s, DNS {dns_cost:.2f} s at error <= {target:.2e}")
    say(f"HMM/DNS cost at 1/32: {hmm_cost / dns_cost:.2f}")


if __name__ == "__main__":
    main()
