"""A periodic LAMMPS box of atoms that can be deformed by any ``F`` and asked for its stress.

:class:`LammpsBox` owns one LAMMPS instance on ``MPI.COMM_SELF`` (the dispatcher runs every
micro solve on one rank), built once: units ``lj``, a simple lattice (FCC in 3D, triangular
in 2D) replicated ``cells`` times, one atom type, the user's pair style. Each evaluation
puts the box into the state it asks for from scratch (cell, positions, velocities), so a
result does not depend on what the box did before, nor on the order in which a rank
solves its points.

Conventions of the engine that this module hides (measured, see DEVELOPERS.md):

* LAMMPS wants a *restricted* triclinic cell, upper triangular. The deformed cell
  ``H = F L`` is written ``H = Q R`` (QR, diagonal of ``R`` positive, ``Q`` a rotation as
  ``det F > 0``); the box is ``R``, the atoms are rotated by ``Q^T``, and the stress is
  rotated back, ``sigma = Q sigma_R Q^T``.
* ``compute thermo_press`` is the pressure tensor ``P`` (kinetic part included); the Cauchy
  stress is ``-P``. It is current only after a ``run`` (``run 0`` after a minimisation).
* Numbers go into commands through ``repr(float(x))``: a NumPy scalar prints as
  ``np.float64(...)`` and LAMMPS refuses it; ``repr`` keeps every digit.
* An error of LAMMPS (an unknown pair style, bad coefficients ...) arrives as a plain
  ``Exception`` with LAMMPS's message; it is re-raised as :class:`LammpsError` naming the
  command.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

__all__ = ["LammpsBox", "LammpsError", "LammpsTimeout", "lattice_basis"]

_CMDARGS = ["-log", "none", "-screen", "none", "-nocite"]
# RanMars (velocity create, fix langevin) accepts seeds in 1 .. 900 000 000.
MAX_SEED = 900_000_000


class LammpsError(RuntimeError):
    """LAMMPS refused a command; the message is LAMMPS's, with the command."""


class LammpsTimeout(LammpsError, TimeoutError):
    """A ``run`` or ``minimize`` stopped at the wall-time limit of :meth:`LammpsBox.set_timeout`.

    LAMMPS's ``timer timeout`` ends a run early *without an error* (and skips every later
    run or minimisation): the box would report the stress of an unfinished run. The box
    checks the timer after each of its runs and raises this instead.
    """


def lattice_basis(lattice: str) -> tuple[np.ndarray, np.ndarray]:
    """The conventional cell of a lattice in units of its lattice constant.

    Returns:
        ``(cell, basis)``: the cell edges (a diagonal ``d x d`` matrix, columns) and the
        fractional positions of its atoms (rows). FCC: the cube of edge ``a`` with 4
        atoms. ``hex`` (2D triangular, ``a`` the nearest-neighbour distance): the
        rectangle ``a x a sqrt(3)`` with 2 atoms.

    Raises:
        ValueError: On an unknown lattice.
    """
    if lattice == "fcc":
        basis = np.array([[0, 0, 0], [0.5, 0.5, 0], [0.5, 0, 0.5], [0, 0.5, 0.5]], dtype=float)
        return np.eye(3), basis
    if lattice == "hex":
        return np.diag([1.0, np.sqrt(3.0)]), np.array([[0.0, 0.0], [0.5, 0.5]])
    raise ValueError(f"unknown lattice {lattice!r}; use 'fcc' (3D) or 'hex' (2D triangular)")


def _num(x) -> str:
    return repr(float(x))


class LammpsBox:
    """A periodic box of atoms in LAMMPS, deformed by ``F`` and queried for its stress.

    Args:
        lattice: ``"fcc"`` (3D) or ``"hex"`` (2D triangular).
        lattice_constant: ``a`` in the reference configuration (FCC: cube edge; hex:
            nearest-neighbour distance).
        cells: Conventional cells along each axis (``d`` positive integers).
        pair_style: The LAMMPS ``pair_style`` arguments, e.g. ``"lj/cut 2.5"``.
        pair_coeff: The ``pair_coeff`` argument lines, e.g. ``["* * 1.0 1.0"]``.
        pair_modify: Extra ``pair_modify`` arguments (e.g. ``"shift yes"``), or ``None``.
        mass: Atom mass.

    Raises:
        ValueError: On a bad lattice, constant or cell count.
        LammpsError: If LAMMPS refuses the set-up (e.g. an unknown pair style); the
            message is LAMMPS's.
    """

    def __init__(
        self,
        lattice: str,
        lattice_constant: float,
        cells: Sequence[int],
        pair_style: str,
        pair_coeff: Sequence[str],
        pair_modify: str | None = None,
        mass: float = 1.0,
    ):
        cell, basis = lattice_basis(lattice)
        d = cell.shape[0]
        if not (np.isfinite(lattice_constant) and lattice_constant > 0):
            raise ValueError(f"the lattice constant must be positive, got {lattice_constant!r}")
        cells = tuple(int(c) for c in cells)
        if len(cells) != d or min(cells) < 1:
            raise ValueError(f"cells must be {d} positive integers for {lattice!r}, got {cells}")
        if not (np.isfinite(mass) and mass > 0):
            raise ValueError(f"mass must be positive, got {mass!r}")
        if isinstance(pair_coeff, str):
            pair_coeff = [pair_coeff]
        self.lattice, self.dim, self.cells = lattice, d, cells
        self.lattice_constant = float(lattice_constant)
        counts = np.array(cells)
        # Reference cell L (columns) and reference positions X (rows), atoms by id order.
        self.reference_cell = self.lattice_constant * cell * counts[None, :]
        grid = np.stack(np.meshgrid(*[np.arange(c) for c in cells], indexing="ij"), -1)
        frac = (grid.reshape(-1, 1, d) + basis[None, :, :]).reshape(-1, d) / counts
        self.fractional = frac
        self.num_atoms = len(frac)
        self._setup = (mass, pair_style, list(pair_coeff), pair_modify)
        self.lmp = None
        self._start()
        self.pair_style = pair_style
        self._rotation = np.eye(d)
        self._F = np.eye(d)
        self.timeout: float | None = None

    def _start(self) -> None:
        """A new LAMMPS instance with the box (reference cell, atoms, pair style) in it."""
        import lammps  # Debian python3-lammps, linked to the same Open MPI as DOLFINx
        from mpi4py import MPI

        self.lmp = lammps.lammps(comm=MPI.COMM_SELF, cmdargs=_CMDARGS)
        try:
            self._build(self.dim, self.fractional, *self._setup)
        except BaseException:
            self.close()  # a refused set-up does not leave an instance behind
            raise

    def rebuild(self) -> None:
        """Replace the LAMMPS instance by a fresh one with the same box.

        After some errors LAMMPS cannot go on (atoms lost by a trajectory that blew up:
        every later ``change_box`` fails too); a rebuilt box can. Costs about 0.1 s.
        """
        self.close()
        self.timeout = None
        self._start()

    def _build(self, d, frac, mass, pair_style, pair_coeff, pair_modify) -> None:
        L = self.reference_cell
        z = "-0.5 0.5 0 0 0" if d == 2 else f"0 {_num(L[2, 2])} 0 0 0"
        self.commands(
            "units lj",
            f"dimension {d}",
            "boundary p p p",
            "atom_style atomic",
            # keep atoms in creation order (no spatial sorting) and find them by id
            "atom_modify map array sort 0 0.0",
            f"region box prism 0 {_num(L[0, 0])} 0 {_num(L[1, 1])} {z}",
            "create_box 1 box",
            f"mass 1 {_num(mass)}",
        )
        self.commands(f"pair_style {pair_style}", *[f"pair_coeff {c}" for c in pair_coeff])
        if pair_modify:
            self.commands(f"pair_modify {pair_modify}")
        x = np.zeros((self.num_atoms, 3))
        x[:, :d] = frac @ L.T
        ids = np.arange(1, self.num_atoms + 1)
        created = self.lmp.create_atoms(
            self.num_atoms, ids.tolist(), [1] * self.num_atoms, x.ravel().tolist()
        )
        if created != self.num_atoms:
            raise LammpsError(f"LAMMPS created {created} of {self.num_atoms} atoms")
        self.commands(
            "neighbor 0.3 bin",
            "neigh_modify every 1 delay 0 check yes",
            "thermo_modify norm no",
        )

    # -- commands -------------------------------------------------------------------------
    def commands(self, *lines: str) -> None:
        """Run LAMMPS commands; a refusal becomes :class:`LammpsError` with the message."""
        for line in lines:
            try:
                self.lmp.command(line)
            except Exception as error:  # LAMMPS raises a bare Exception
                raise LammpsError(f"LAMMPS refused `{line}`: {error}") from None

    def set_timeout(self, seconds: float | None, every: int = 10) -> None:
        """Stop runs and minimisations ``seconds`` of wall time from now (``None``: no limit).

        LAMMPS's ``timer timeout``: the clock is checked every ``every`` steps (outer
        iterations of a minimisation), so a run stops within ``every`` steps of the limit.
        The procedures of this box then raise :class:`LammpsTimeout`. Set ``None`` again
        when the timed work is done: after the limit LAMMPS skips every run.

        Raises:
            ValueError: If ``seconds`` is not positive or ``every`` not a positive integer.
        """
        if seconds is None:
            self.commands("timer timeout off")
            self.timeout = None
            return
        if not (np.isfinite(seconds) and seconds > 0):
            raise ValueError(f"the timeout must be positive seconds, got {seconds!r}")
        if isinstance(every, bool) or int(every) != every or every < 1:
            raise ValueError(f"every must be a positive integer, got {every!r}")
        self.commands(f"timer timeout {_num(seconds)} every {int(every)}")
        self.timeout = float(seconds)

    def timed_out(self) -> bool:
        """Whether the limit of :meth:`set_timeout` has passed (LAMMPS's ``timeremain``)."""
        return self.timeout is not None and float(self.lmp.get_thermo("timeremain")) <= 0.0

    def _check_timeout(self, what: str) -> None:
        if self.timed_out():
            raise LammpsTimeout(
                f"LAMMPS stopped `{what}` at the wall-time limit of {self.timeout:g} s "
                f"(timer timeout); the result of the unfinished {what.split()[0]} is dropped"
            )

    def close(self) -> None:
        """Free the LAMMPS instance."""
        if getattr(self, "lmp", None) is not None:
            self.lmp.close()
            self.lmp = None

    # -- state ----------------------------------------------------------------------------
    def deform(self, F: np.ndarray) -> None:
        """Put the box in the homogeneously deformed state ``x = F X`` (atoms at rest).

        Raises:
            ValueError: If ``F`` is not ``d x d``, not finite, singular or ``det F <= 0``.
        """
        d = self.dim
        F = np.asarray(F, dtype=np.float64)
        if F.shape != (d, d) or not np.all(np.isfinite(F)):
            raise ValueError(f"F must be a finite {d} x {d} matrix, got {F.tolist()}")
        det = float(np.linalg.det(F))
        if not det > 1e-12:
            raise ValueError(
                f"det F = {det:.3g} for F = {F.tolist()}: the deformation must be invertible "
                "and keep orientation (det F > 0); a macro Newton step that inverts an "
                "element is too long"
            )
        Q, R = np.linalg.qr(F @ self.reference_cell)
        signs = np.sign(np.diag(R))
        Q, R = Q * signs[None, :], R * signs[:, None]
        self._rotation, self._F = Q, F
        if d == 2:
            box = (
                f"x final 0 {_num(R[0, 0])} y final 0 {_num(R[1, 1])} xy final {_num(R[0, 1])}"
            )
        else:
            box = (
                f"x final 0 {_num(R[0, 0])} y final 0 {_num(R[1, 1])} z final 0 "
                f"{_num(R[2, 2])} xy final {_num(R[0, 1])} xz final {_num(R[0, 2])} "
                f"yz final {_num(R[1, 2])}"
            )
        # no remap: the positions are set below from the reference lattice
        self.commands(f"change_box all {box} units box")
        positions = self.fractional @ R.T  # rotated current positions Q^T F X
        x = self.lmp.numpy.extract_atom("x")
        v = self.lmp.numpy.extract_atom("v")
        ids = self.lmp.numpy.extract_atom("id")
        n = self.lmp.extract_global("nlocal")
        x[:n, :] = 0.0
        x[:n, :d] = positions[ids[:n] - 1]
        v[:n, :] = 0.0

    @property
    def rotation(self) -> np.ndarray:
        """``Q`` of the last :meth:`deform` (box frame -> macro frame)."""
        return self._rotation

    def volume(self) -> float:
        """Current volume (area in 2D)."""
        return float(abs(np.linalg.det(self._F)) * abs(np.linalg.det(self.reference_cell)))

    def pressure_tensor(self) -> np.ndarray:
        """The current pressure tensor in the box frame, ``d x d`` (call after a run)."""
        p = np.asarray(self.lmp.numpy.extract_compute("thermo_press", 0, 1), dtype=float)
        return self._tensor(p)

    def _tensor(self, p) -> np.ndarray:
        # LAMMPS order: xx yy zz xy xz yz
        if self.dim == 2:
            return np.array([[p[0], p[3]], [p[3], p[1]]])
        return np.array([[p[0], p[3], p[4]], [p[3], p[1], p[5]], [p[4], p[5], p[2]]])

    def cauchy_stress(self, pressure_box: np.ndarray | None = None) -> np.ndarray:
        """``sigma = -Q P_box Q^T`` in the macro frame (of the current pressure by default)."""
        P = self.pressure_tensor() if pressure_box is None else pressure_box
        Q = self._rotation
        return -Q @ P @ Q.T

    # -- procedures -----------------------------------------------------------------------
    def relax(self, force_tolerance: float, max_iterations: int) -> int:
        """Minimise the energy in the fixed cell (CG), then ``run 0``; returns iterations.

        ``force_tolerance`` is LAMMPS's ``ftol``: the 2-norm of the global force vector.

        Raises:
            LammpsTimeout: If the minimisation stopped at the limit of :meth:`set_timeout`.
        """
        before = int(self.lmp.get_thermo("step"))
        self.commands(
            "min_style cg",
            f"minimize 0.0 {_num(force_tolerance)} {int(max_iterations)} "
            f"{int(10 * max_iterations)}",
        )
        # a minimisation advances the step by its iterations (extract_global("niter") is
        # not a global of this LAMMPS: it gave None, so 0 iterations were reported)
        iterations = int(self.lmp.get_thermo("step")) - before
        self._check_timeout("minimize")
        self.commands("run 0")
        self._check_timeout("run 0")
        return iterations

    def max_force(self) -> float:
        """Largest force component on an atom (after a run)."""
        f = self.lmp.numpy.extract_atom("f")
        n = self.lmp.extract_global("nlocal")
        return float(np.abs(f[:n]).max())

    def thermostatted_run(
        self,
        *,
        temperature: float,
        timestep: float,
        damping: float,
        equilibration: int,
        blocks: int,
        block_steps: int,
        sample_every: int,
        seeds: tuple[int, int],
    ) -> np.ndarray:
        """Langevin NVT from the current positions; the block averages of the pressure.

        Velocities are drawn at ``temperature`` (seed ``seeds[0]``), the Langevin
        thermostat (seed ``seeds[1]``, damping time ``damping``) acts on every atom with
        plain velocity Verlet (``fix nve``). After ``equilibration`` steps, ``blocks``
        blocks of ``block_steps`` steps each are run; the pressure tensor is sampled every
        ``sample_every`` steps and averaged over each block (``fix ave/time``).

        Returns:
            ``(blocks, d, d)`` block means of the pressure tensor in the box frame.

        Raises:
            LammpsTimeout: If a run stopped at the limit of :meth:`set_timeout`.
        """
        if block_steps % sample_every:
            raise ValueError(
                f"block_steps ({block_steps}) must be a multiple of sample_every "
                f"({sample_every})"
            )
        T = _num(temperature)
        self.commands(
            "reset_timestep 0",
            f"timestep {_num(timestep)}",
            f"velocity all create {T} {int(seeds[0])} dist gaussian mom yes loop geom",
            "fix hmm_nve all nve",
            f"fix hmm_langevin all langevin {T} {T} {_num(damping)} {int(seeds[1])}",
        )
        if self.dim == 2:
            self.commands("fix hmm_2d all enforce2d")
        try:
            if equilibration > 0:
                self.commands(f"run {int(equilibration)}")
                self._check_timeout(f"run {int(equilibration)} (equilibration)")
            self.commands("reset_timestep 0")
            repeat = block_steps // sample_every
            self.commands(
                f"fix hmm_avg all ave/time {int(sample_every)} {int(repeat)} {int(block_steps)} "
                "c_thermo_press[*]"
            )
            out = np.empty((blocks, self.dim, self.dim))
            for k in range(blocks):
                self.commands(f"run {int(block_steps)}" + (" pre no post no" if k else ""))
                self._check_timeout(f"run {int(block_steps)} (block {k})")
                p = [self.lmp.extract_fix("hmm_avg", 0, 1, i) for i in range(6)]
                out[k] = self._tensor(p)
        finally:
            for fix in ("hmm_avg", "hmm_langevin", "hmm_nve", "hmm_2d"):
                if self.lmp.has_id("fix", fix):
                    self.lmp.command(f"unfix {fix}")
        return out
