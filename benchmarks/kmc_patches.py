"""Benchmark: KMC patches on a DOLFINx mesh against the full lattice, one reaction front.

The set-up of ``demos/demo_kmc_front.py`` at full size: ZGB with CO and O hopping (y =
0.36, k = 1, D = 100 per pair), a front of the reactive state into the CO-covered one on a
strip of 400 x 64 sites (4 full-lattice replicas), against ``SurfaceReactionDiffusion`` on
40 P1 cells with one persistent 24 x 8 KMC patch per cell (6 replicas). The demo itself
runs here (in process, no picture) and leaves its figures in ``summary.json``.

Reported: both front speeds with their standard errors over replicas, the wall time per
replica (one core), and the cost at equal front-speed accuracy: replicas in proportion to
the variance of one replica's speed, so that both standard errors are equal. The last line
is ``patch saving: X.Xx`` (full-lattice cost / patch cost at equal accuracy). Run:
``docker/run python3 benchmarks/kmc_patches.py`` (about two minutes).
"""

import json
import runpy
import sys
import tempfile
from pathlib import Path

demo = Path(__file__).resolve().parent.parent / "demos" / "demo_kmc_front.py"
with tempfile.TemporaryDirectory(dir=Path(__file__).resolve().parent.parent) as folder:
    sys.argv = [str(demo), "--no-png", "--output", folder]
    try:
        runpy.run_path(str(demo), run_name="__main__")
    except SystemExit as stop:  # a failed self-check still leaves the figures
        print(f"(the demo exited with {stop.code})")
    result = json.loads((Path(folder) / "summary.json").read_text())

gap = result["patch_speed"] / result["full_speed"] - 1
print(f"front speed: full lattice {result['full_speed']:.3f} +- {result['full_error']:.3f}, "
      f"patches {result['patch_speed']:.3f} +- {result['patch_error']:.3f} ({100 * gap:+.1f} %), "
      f"mean field {result['mean_field_speed']:.3f} sites/MCS")
per_run = result["full_seconds_per_replica"] / result["patch_seconds_per_replica"]
print(f"per replica: full lattice {result['full_seconds_per_replica']:.2f} s "
      f"({result['sites_full']} sites), patches {result['patch_seconds_per_replica']:.2f} s "
      f"({result['sites_patch']} sites): {per_run:.2f}x")
print(f"patch saving: {1 / result['patch_cost_at_equal_error']:.1f}x")
