"""Shared test set-up: collect PETSc objects and keep ranks in step under mpirun."""

import gc

import pytest
from mpi4py import MPI


@pytest.fixture(autouse=True)
def _collect_and_sync():
    yield
    gc.collect()
    MPI.COMM_WORLD.barrier()
