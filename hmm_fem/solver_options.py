"""PETSc options that live as long as the solver they belong to.

PETSc reads some options long after ``setFromOptions``: a direct solver's ordering or
memory options (``mat_mumps_icntl_7``, ``mat_cholmod_*``) are read when the factor is
created, at the first factorisation. Options deleted right after ``setFromOptions`` (as
DOLFINx's problem classes do) are then silently ignored. Every hmm-fem solver keeps its
options in the database under its own prefix for its whole life with
:class:`PrefixedOptions`, and removes them when it is destroyed.
"""

from __future__ import annotations

from collections.abc import Mapping

from petsc4py import PETSc

__all__ = ["PrefixedOptions"]


class PrefixedOptions:
    """Options written to the PETSc database under ``prefix`` until :meth:`clear`.

    Example:
        >>> options = PrefixedOptions("hmm_cell_3_", {"pc_type": "lu"})
        >>> ksp.setOptionsPrefix(options.prefix); ksp.setFromOptions()
        >>> ...                                   # the factorisation reads them too
        >>> options.clear()                       # when the solver is destroyed

    Args:
        prefix: The solver's options prefix (unique, ends with ``_``).
        options: Option name (without the prefix) -> value.
    """

    def __init__(self, prefix: str, options: Mapping):
        self.prefix = prefix
        self.options = dict(options)
        database = PETSc.Options()
        for key, value in self.options.items():
            database[prefix + key] = value

    def set(self, key: str, value) -> None:
        """Add or change one option (it is removed with the others by :meth:`clear`)."""
        self.options[key] = value
        PETSc.Options()[self.prefix + key] = value

    def clear(self) -> None:
        """Remove the options from the database (idempotent)."""
        database = PETSc.Options()
        for key in self.options:
            database.delValue(self.prefix + key)
        self.options = {}

    def __del__(self):
        # The database is global: do not leave options behind when a solver is collected
        # without an explicit destroy().
        try:
            self.clear()
        except Exception:  # noqa: BLE001 - interpreter shutdown: PETSc may be finalised
            pass
