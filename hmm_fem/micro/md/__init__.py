"""Molecular dynamics as a micro model: the stress of a periodic box of atoms (LAMMPS).

* :class:`MDStressModel` (:mod:`~hmm_fem.micro.md.model`): the macro deformation gradient
  (or small strain) imposed on a periodic box; at T = 0 the relaxed virial stress, at
  T > 0 the Langevin-thermostatted time average with its standard error.
* :class:`LammpsBox` (:mod:`~hmm_fem.micro.md.box`): the LAMMPS instance behind it
  (Debian ``python3-lammps`` on ``MPI.COMM_SELF``), built once and deformed per solve.
* :mod:`~hmm_fem.micro.md.lattice_sum`: the independent NumPy references: Cauchy–Born
  stress, tangent and Born elastic constants of a pair potential with a cutoff.
* :mod:`~hmm_fem.micro.md.eos`: the Johnson–Zollweg–Gubbins (1993) equation of state of the
  Lennard-Jones fluid.

LAMMPS is imported when a box is built, not at ``import hmm_fem.micro.md``.
"""

from . import eos, lattice_sum
from .box import LammpsBox, LammpsError, LammpsTimeout, lattice_basis
from .model import MDStressModel

__all__ = [
    "MDStressModel",
    "LammpsBox",
    "LammpsError",
    "LammpsTimeout",
    "lattice_basis",
    "eos",
    "lattice_sum",
]
