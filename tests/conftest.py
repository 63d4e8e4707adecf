"""Shared test set-up: collect PETSc objects and keep ranks in step under mpirun."""

import gc

import pytest
from mpi4py import MPI

# Under mpirun, automatic garbage collection would run at different moments on the ranks,
# and a collected PETSc or DOLFINx object on a parallel communicator is destroyed
# collectively: one rank inside such a destroy and the other elsewhere hang (seen once in
# three 2-rank runs of the adaptivity tests). So the ranks collect only together, after
# every test (below).
if MPI.COMM_WORLD.size > 1:
    gc.disable()


@pytest.fixture(autouse=True)
def _collect_and_sync():
    yield
    gc.collect()
    MPI.COMM_WORLD.barrier()


@pytest.fixture(autouse=True, scope="session")
def _private_cell_cache(tmp_path_factory):
    """The CLI's cell cache goes to a folder of this test session, not the user's home.

    Under mpirun every rank must use the same folder (the cache is shared between ranks), so
    rank 0 makes it and broadcasts its name. A cache chosen by the caller is kept.
    """
    import os

    if "HMM_FEM_CELL_CACHE" in os.environ:
        yield
        return
    folder = str(tmp_path_factory.mktemp("cells")) if MPI.COMM_WORLD.rank == 0 else None
    os.environ["HMM_FEM_CELL_CACHE"] = MPI.COMM_WORLD.bcast(folder, root=0)
    yield
    del os.environ["HMM_FEM_CELL_CACHE"]
