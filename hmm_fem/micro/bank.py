"""The cell bank: one cell problem per rounded value of a microstructure parameter.

A micro model whose microstructure varies over the macro domain (a volume fraction, a
solid fraction given as a macro field) needs one cell per distinct value. The bank
rounds the values to a resolution, builds each cell once, and keeps it for the run.
The conductivity, elasticity and permeability models share it.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

import numpy as np

__all__ = ["CellBank"]


class CellBank:
    """Cell problems built once per rounded parameter value (or one fixed cell).

    Example:
        >>> bank = CellBank(lambda f: cells.square(f), lambda c: ConductivityCell(c, k),
        ...                 parameter="volume_fraction", resolution=0.01)
        >>> bank.get(0.3)               # built at the first call, then reused

    Args:
        cell: A :class:`~hmm_fem.geometry.UnitCell` (one geometry for the whole run) or a
            function ``value -> UnitCell`` of the microstructure parameter.
        build: Function ``UnitCell -> item``: the cell problem (or any result computed
            from the cell, e.g. a permeability) kept in the bank.
        parameter: Name of the parameter as a macro field (``"volume_fraction"``).
        resolution: Values are rounded to multiples of it (must be positive).
        dim: Dimension of the cells a function builds (default 2); with a fixed cell its
            own dimension.
        owner: Name of the micro model, for error messages.

    Attributes:
        parameters: The micro model's parameter names: ``()`` for a fixed cell,
            ``(parameter,)`` for a function.
        dim: The dimension of the cells.

    Raises:
        TypeError: If ``cell`` is neither a cell nor callable.
        ValueError: If ``resolution`` is not positive.
    """

    def __init__(
        self,
        cell,
        build: Callable[[Any], Any],
        *,
        parameter: str,
        resolution: float,
        dim: int | None = None,
        owner: str = "micro model",
    ):
        from ..geometry import UnitCell

        if not (np.isfinite(resolution) and resolution > 0):
            raise ValueError(f"{owner}: parameter_resolution must be > 0, got {resolution}")
        self.parameter = parameter
        self.resolution = float(resolution)
        self.owner = owner
        self._build = build
        self._items: dict[float | None, Any] = {}
        if isinstance(cell, UnitCell):
            self._factory, self._fixed = None, cell
            self.dim = cell.dim
            self.parameters: tuple[str, ...] = ()
        elif callable(cell):
            self._factory, self._fixed = cell, None
            self.dim = 2 if dim is None else int(dim)
            self.parameters = (parameter,)
        else:
            raise TypeError(
                f"{owner}: cell must be a UnitCell or a function {parameter} -> UnitCell, "
                f"got {type(cell).__name__}"
            )

    @property
    def varies(self) -> bool:
        """Whether the cell is a function of the parameter (a macro field)."""
        return self._factory is not None

    def rounded(self, parameters: Mapping[str, np.ndarray], n: int) -> np.ndarray:
        """The bank's state columns at ``n`` points: ``(n, 0)``, or the rounded values ``(n, 1)``.

        Raises:
            ValueError: If the parameter is a macro field but was not given.
        """
        if not self.varies:
            return np.empty((n, 0))
        if self.parameter not in parameters:
            raise ValueError(
                f"{self.owner} needs the parameter '{self.parameter}' (a macro field); give it "
                f"as parameters={{'{self.parameter}': ...}}"
            )
        values = np.asarray(parameters[self.parameter], dtype=np.float64).reshape(-1)
        return (np.round(values / self.resolution) * self.resolution).reshape(-1, 1)

    def get(self, value: float | None = None, *build_args):
        """The item of the fixed cell, or of the cell at ``value`` (used as given; built once).

        ``build_args`` are passed to ``build`` after the cell when the item is built (for
        example phase properties at the state that first needs the cell).

        Raises:
            ValueError: If the built cell's dimension is not :attr:`dim`.
        """
        key = None if not self.varies else float(value)
        item = self._items.get(key)
        if item is None:
            unit_cell = self._fixed if not self.varies else self._factory(key)
            if unit_cell.dim != self.dim:
                raise ValueError(
                    f"{self.owner}: the cell for {self.parameter}={key} is {unit_cell.dim}D but "
                    f"the model is {self.dim}D; pass dim={unit_cell.dim}"
                )
            item = self._build(unit_cell, *build_args)
            self._items[key] = item
        return item

    def has(self, value: float | None = None) -> bool:
        """Whether the item of the cell at ``value`` (or of the fixed cell) is built."""
        return (None if not self.varies else float(value)) in self._items

    def __len__(self) -> int:
        return len(self._items)

    def items(self):
        """The ``(value, item)`` pairs built so far (value ``None`` for the fixed cell)."""
        return self._items.items()

    def destroy(self) -> None:
        """Free every item that has a ``destroy`` method and empty the bank."""
        for item in self._items.values():
            if hasattr(item, "destroy"):
                item.destroy()
        self._items.clear()
