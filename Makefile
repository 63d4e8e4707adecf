# make demo   - the flagship demo (effective conductivity of a composite cell)
# make test   - lint, the test suite serially, the MPI tests on 2 ranks, then the ParaView
#               check and the documentation site (warnings are errors)
# make bench  - the benchmarks
# make docs   - the documentation site (docs/_build/html), built from the demos run at their
#               test size, with every VTX file they write opened and checked in ParaView
# make check-paraview - only the demos and the ParaView check
# make validate - long validation runs (transient micro models against the DNS)
# Every target runs inside the FEniCSx environment through docker/run, which
# builds that environment on first use when needed (see README.md).
RUN := docker/run
PYTEST := python3 -m pytest -q --color=no

.PHONY: demo test test-serial test-mpi lint bench docs check-paraview validate info clean

DEMO_OUTPUTS := docs/_build/demos
# The demos at their test size, then ParaView's own Python opens every VTX file they wrote.
CHECK_PARAVIEW := xvfb-run -a python3 docs/_tools/run_demos.py --output $(DEMO_OUTPUTS); \
	  xvfb-run -a pvpython docs/_tools/paraview_check.py $(DEMO_OUTPUTS)
SPHINX := python3 -m sphinx -W --keep-going -q -b html docs docs/_build/html

demo:
	$(RUN) xvfb-run -a python3 demos/demo_cell_conductivity.py

test:
	$(RUN) bash -c 'set -e; ruff check hmm_fem tests demos benchmarks meshes docs; \
	  timeout 1800 xvfb-run -a $(PYTEST) tests; \
	  timeout 1200 xvfb-run -a mpirun -n 2 $(PYTEST) -m mpi tests; \
	  $(CHECK_PARAVIEW); $(SPHINX)'

test-serial:
	$(RUN) xvfb-run -a $(PYTEST) tests

test-mpi:
	$(RUN) xvfb-run -a mpirun -n 2 $(PYTEST) -m mpi tests

lint:
	$(RUN) ruff check hmm_fem tests demos benchmarks meshes docs

bench:
	$(RUN) python3 benchmarks/cell_conductivity.py
	$(RUN) python3 benchmarks/reduced_basis.py
	$(RUN) python3 benchmarks/adaptivity.py
	$(RUN) python3 benchmarks/fe2_heat.py
	$(RUN) python3 benchmarks/fe2_elasticity.py
	$(RUN) python3 benchmarks/cell_permeability.py
	$(RUN) python3 benchmarks/cells_3d.py
	$(RUN) python3 benchmarks/equation_free.py
	$(RUN) python3 benchmarks/kmc.py
	$(RUN) python3 benchmarks/kmc_patches.py
	$(RUN) python3 benchmarks/battery.py
	$(RUN) python3 benchmarks/patches.py
	$(RUN) python3 benchmarks/sde_hmm.py
	$(RUN) python3 benchmarks/bgk.py
	$(RUN) python3 benchmarks/md_micro.py
	$(RUN) python3 benchmarks/transient_micro.py
	$(RUN) python3 benchmarks/peers.py
	$(RUN) python3 benchmarks/time_to_accuracy.py
	$(RUN) python3 benchmarks/cli_start.py
	$(RUN) python3 benchmarks/remedies.py
	$(RUN) python3 benchmarks/scaling.py

docs:
	$(RUN) bash -c 'set -e; $(CHECK_PARAVIEW); $(SPHINX)'
	@echo "open docs/_build/html/index.html"

check-paraview:
	$(RUN) bash -c 'set -e; $(CHECK_PARAVIEW)'

validate:
	$(RUN) python3 benchmarks/transient_validation.py --output results

info:
	$(RUN) python3 -m hmm_fem info

clean:
	rm -rf results .pytest_cache docs/_build docs/generated
