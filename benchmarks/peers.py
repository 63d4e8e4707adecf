"""Benchmark: hmm-fem against SfePy on the same periodic cells and the same meshes.

SfePy (https://sfepy.org) is the peer: a mature Python FE code with periodic homogenisation.
Both codes solve the textbook corrector problems on one mesh (gmsh, made by hmm-fem and
exported to SfePy as a MEDIT file), square array of discs, f = 0.5, contrast 10:

1. conductivity (P1) and plane-strain elasticity (P1) cells at about 1e4 and 1e5 dofs:
   both answers, their difference, and for each code the time
   - cold: from the mesh to the first tensor (SfePy reads the mesh file; hmm-fem's JIT
     cache is warm, SfePy has no JIT),
   - warm: the tensor again with new phase values on the built problem (best of 3);
2. time to accuracy: K* of the conductivity cell for P1 and P2 on a sequence of meshes,
   the error against the Rayleigh multipole value (references.rayleigh_square_array,
   exact to 1e-14), and the warm time of the coarsest mesh that reaches 2e-5.

SfePy is not a dependency of hmm-fem. On first use it is installed from PyPI into
``--peer-dir`` (default ``~/.cache/hmm-fem/peers/sfepy-2026.3`` inside the environment;
compiled from source, 5–9 minutes once). Each code uses its own idiom for the linear
solve: hmm-fem CHOLMOD on the constrained matrix, SfePy ``ScipyDirect`` (SuperLU here, as
scikit-umfpack is not installed) with the factorisation kept between load cases.

Run: ``make bench`` or ``docker/run python3 benchmarks/peers.py [--quick]``. The last line
is ``sfepy/hmm-fem warm at 1e5: X.X`` (SfePy's warm time over ours, conductivity cell).
"""

import argparse
import tempfile
import time
from pathlib import Path

parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
parser.add_argument("--peer-dir", default="~/.cache/hmm-fem/peers/sfepy-2026.3")
parser.add_argument("--quick", action="store_true", help="small meshes only (a smoke run)")
parser.add_argument("--repeat", type=int, default=3, help="repetitions of a warm evaluation")
args = parser.parse_args()

import numpy as np
from _common import best
from _peers_sfepy import (
    SfepyConductivityCell,
    SfepyElasticityCell,
    ensure_sfepy,
    write_medit,
)

from hmm_fem import cells, references

version = ensure_sfepy(Path(args.peer_dir))
print(f"SfePy {version}")
F, K_M, K_I = 0.5, 1.0, 10.0
MODULI = {"matrix": (1.0, 0.3), "inclusion": (10.0, 0.2)}
tmp = Path(tempfile.mkdtemp(prefix="hmm-fem-peers-"))

# The JIT cache warm for hmm-fem's cold timings (both degrees, both physics).
warmup = cells.square(F, mesh_size=0.2)
for degree in (1, 2):
    cells.ConductivityCell(warmup, {"matrix": 1, "inclusion": 2}, degree=degree).effective_tensor()
cells.ElasticityCell(warmup, MODULI).effective_tensor()


def tags(cell, values):
    return {cell.phases[name]: value for name, value in values.items()}


def compare(physics, mesh_size):
    """Cold, warm and answers of both codes on one mesh; returns the warm times."""
    cell = cells.square(F, mesh_size=mesh_size)
    mesh_file = write_medit(cell, tmp / f"{physics}_{mesh_size}.mesh")
    if physics == "conductivity":
        values = {"matrix": K_M, "inclusion": K_I}
        new = iter({"matrix": K_M, "inclusion": K_I * (1 + 0.01 * i)} for i in range(1, 99))
        ours_type, peer_type = cells.ConductivityCell, SfepyConductivityCell
    else:
        values = MODULI
        new = iter(
            {"matrix": (1.0, 0.3), "inclusion": (10.0 * (1 + 0.01 * i), 0.2)} for i in range(1, 99)
        )
        ours_type, peer_type = cells.ElasticityCell, SfepyElasticityCell
    start = time.perf_counter()
    ours = ours_type(cell, values)
    T_ours = ours.effective_tensor()
    cold_ours = time.perf_counter() - start
    start = time.perf_counter()
    peer = peer_type(mesh_file, tags(cell, values))
    T_peer = peer.effective_tensor()
    cold_peer = time.perf_counter() - start
    pairs = [next(new) for _ in range(args.repeat)]
    queue_ours, queue_peer = iter(pairs), iter(pairs)
    warm_ours, _ = best(lambda: ours.effective_tensor(next(queue_ours)), args.repeat)
    warm_peer, _ = best(
        lambda: peer.effective_tensor(tags(cell, next(queue_peer))), args.repeat
    )
    last = pairs[-1]
    difference = np.abs(
        ours.effective_tensor(last) - peer.effective_tensor(tags(cell, last))
    ).max() / np.abs(T_ours).max()
    print(
        f"{physics:12s} P1 {ours.num_dofs:7d} dofs | hmm-fem cold {cold_ours:7.3f} s warm "
        f"{warm_ours:7.3f} s | SfePy ({peer.num_dofs} dofs) cold {cold_peer:7.3f} s warm "
        f"{warm_peer:7.3f} s | warm ratio {warm_peer / warm_ours:5.1f} | answers differ by "
        f"{difference:.1e} (first: {T_ours[0, 0]:.8f} / {T_peer[0, 0]:.8f})",
        flush=True,
    )
    return ours.num_dofs, warm_ours, warm_peer


print("\n1. The same cells, cold and warm (square array, f = 0.5, contrast 10)")
sizes = {
    "conductivity": (0.06, 0.02) if args.quick else (0.014, 0.0036),
    "elasticity": (0.08, 0.03) if args.quick else (0.02, 0.005),
}
results = {physics: [compare(physics, h) for h in hs] for physics, hs in sizes.items()}

print("\n2. Time to accuracy: K*_xx of the conductivity cell against the Rayleigh multipoles")
reference = references.rayleigh_square_array(K_M, K_I, F)
print(f"   reference K*_xx = {reference:.12f} (Rayleigh multipole method, exact to 1e-14)")
target = 2e-5
meshes = (0.08, 0.04, 0.02) if args.quick else (0.04, 0.028, 0.02, 0.014, 0.01, 0.007, 0.005)
reached = {}
for degree in (1, 2):
    for h in meshes:
        if all((code, degree) in reached for code in ("hmm-fem", "SfePy")):
            break
        cell = cells.square(F, mesh_size=h)
        values = {"matrix": K_M, "inclusion": K_I}
        ours = cells.ConductivityCell(cell, values, degree=degree)
        error = abs(ours.effective_tensor()[0, 0] / reference - 1)
        changes = [{"matrix": K_M, "inclusion": K_I * (1 + 0.01 * i)} for i in range(1, 99)]
        queue = iter(changes)
        warm_ours, _ = best(lambda o=ours, q=queue: o.effective_tensor(next(q)), args.repeat)
        peer = SfepyConductivityCell(
            write_medit(cell, tmp / f"scan_{h}.mesh"), tags(cell, values), degree=degree
        )
        error_peer = abs(peer.effective_tensor()[0, 0] / reference - 1)
        queue = iter(changes)
        warm_peer, _ = best(
            lambda p=peer, c=cell, q=queue: p.effective_tensor(tags(c, next(q))), args.repeat
        )
        print(
            f"   P{degree} h = {h:<6} {ours.num_dofs:7d} dofs: hmm-fem error {error:.2e} warm "
            f"{warm_ours:.3f} s | SfePy error {error_peer:.2e} warm {warm_peer:.3f} s",
            flush=True,
        )
        for code, err, warm in (("hmm-fem", error, warm_ours), ("SfePy", error_peer, warm_peer)):
            if err <= target and (code, degree) not in reached:
                reached[code, degree] = warm
for degree in (1, 2):
    for code in ("hmm-fem", "SfePy"):
        warm = reached.get((code, degree))
        text = f"{warm:.3f} s" if warm is not None else f"not reached by h = {meshes[-1]}"
        print(f"   time to {target:.0e}, P{degree}, {code}: {text}")

dofs, warm_ours, warm_peer = results["conductivity"][-1]
print(f"\nconductivity warm at {dofs} dofs: hmm-fem {warm_ours:.3f} s, SfePy {warm_peer:.3f} s")
print(f"sfepy/hmm-fem warm at 1e5: {warm_peer / warm_ours:.1f}")
