# make demo   - the flagship demo (effective conductivity of a composite cell)
# make test   - lint, the test suite serially, then the MPI tests on 2 ranks
# make bench  - the benchmarks
# Every target runs inside the FEniCSx environment through docker/run, which
# builds that environment on first use when needed (see README.md).
RUN := docker/run
PYTEST := python3 -m pytest -q --color=no

.PHONY: demo test test-serial test-mpi lint bench info clean

demo:
	$(RUN) xvfb-run -a python3 demos/demo_cell_conductivity.py

test:
	$(RUN) bash -c 'set -e; ruff check hmm_fem tests demos benchmarks meshes; \
	  timeout 1800 xvfb-run -a $(PYTEST) tests; \
	  timeout 1200 xvfb-run -a mpirun -n 2 $(PYTEST) -m mpi tests'

test-serial:
	$(RUN) xvfb-run -a $(PYTEST) tests

test-mpi:
	$(RUN) xvfb-run -a mpirun -n 2 $(PYTEST) -m mpi tests

lint:
	$(RUN) ruff check hmm_fem tests demos benchmarks meshes

bench:
	$(RUN) python3 benchmarks/cell_conductivity.py
	$(RUN) python3 benchmarks/fe2_heat.py
	$(RUN) python3 benchmarks/fe2_elasticity.py
	$(RUN) python3 benchmarks/cell_permeability.py
	$(RUN) python3 benchmarks/equation_free.py
	$(RUN) python3 benchmarks/kmc.py
	$(RUN) python3 benchmarks/kmc_patches.py
	$(RUN) python3 benchmarks/battery.py
	$(RUN) python3 benchmarks/patches.py
	$(RUN) python3 benchmarks/sde_hmm.py

info:
	$(RUN) python3 -m hmm_fem info

clean:
	rm -rf results .pytest_cache
