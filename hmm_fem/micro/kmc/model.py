"""Lattice reaction models: species, single-site and pair events with rates, declaratively.

A :class:`LatticeModel` lists the species a lattice site can hold and the events that change
them, each written as a reaction string with a rate:

* a **site event** ``"A -> B"``: a site holding ``A`` turns into ``B`` at ``rate`` (per
  site holding ``A``, per unit time); e.g. adsorption ``"* -> CO"``, desorption
  ``"CO -> *"``;
* a **pair event** ``"A B -> C D"``: an (unordered) nearest-neighbour pair of sites holding
  ``A`` and ``B`` turns into ``C`` (where ``A`` was) and ``D`` (where ``B`` was) at ``rate``
  per such pair; e.g. dissociative adsorption ``"* * -> O O"``, reaction ``"CO O -> * *"``,
  hopping ``"CO * -> * CO"``. If ``A == B`` and ``C != D`` the products are placed in a
  random orientation.
* a pair event with ``rate=math.inf`` is **instantaneous**: it happens the moment such a
  pair appears (the original ZGB reaction). After every event each site it changed is
  checked, in random order: if the site and one of its neighbours form the reactants of an
  instantaneous event, one such neighbour (and event) is chosen uniformly at random and
  reacts at once; the sites it changes are checked in turn.

The rates are per unit time, the unit being the user's. They can be changed later, per
lattice (:meth:`~hmm_fem.micro.kmc.KMC.set_rates`), so that a parameter may vary from patch
to patch.

:func:`zgb` builds the Ziff-Gulari-Barshad model of CO oxidation. The model also gives the
**mean-field** (well-mixed, site approximation) rate equations of its coverages,
:meth:`LatticeModel.mean_field_rhs`: the exact large-lattice limit of the engine's
well-mixed mode (see :class:`~hmm_fem.micro.kmc.KMC`).
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np

__all__ = ["Event", "LatticeModel", "zgb"]

# Species are int8 codes in the lattice arrays.
MAX_SPECIES = 127
_NAME = re.compile(r"^[^\s>-][^\s]*$")


@dataclass(frozen=True)
class Event:
    """One event of a lattice model (see :class:`LatticeModel` for the meaning).

    Attributes:
        name: Name of the event (the key of the model's events).
        reactants: Species codes it acts on: one (site event) or two (pair event).
        products: Species codes they become (same length).
        rate: Rate per site (site event) or per nearest-neighbour pair (pair event);
            ``inf`` for an instantaneous pair event.
        reaction: The reaction string as given.
    """

    name: str
    reactants: tuple[int, ...]
    products: tuple[int, ...]
    rate: float
    reaction: str

    @property
    def is_pair(self) -> bool:
        """True for a pair event (two reactant sites)."""
        return len(self.reactants) == 2

    @property
    def instantaneous(self) -> bool:
        """True for an instantaneous pair event (infinite rate)."""
        return math.isinf(self.rate)


class LatticeModel:
    """A lattice reaction model: site species and events with rates.

    Example:
        The ZGB model with a finite reaction rate (what :func:`zgb` builds)::

            model = LatticeModel(
                species=["*", "CO", "O"],
                events={
                    "CO_adsorption": ("* -> CO", y),
                    "O2_adsorption": ("* * -> O O", (1 - y) / 2),
                    "reaction": ("CO O -> * *", 100.0),
                },
            )

    Args:
        species: Names of the species a site can hold (at most 127, no whitespace, not
            starting with ``-`` or ``>``). The first one is the vacancy by default.
        events: Mapping ``name -> (reaction, rate)`` with a reaction string ``"A -> B"``
            (site event) or ``"A B -> C D"`` (pair event) and a rate ``>= 0``
            (``math.inf``: an instantaneous pair event).
        vacancy: The species that fills what :meth:`~hmm_fem.micro.kmc.KMC.lift` leaves
            over when coverages are given for the other species (default: the first).

    Raises:
        ValueError: On an unknown species, a malformed reaction, a negative, NaN or
            infinite site-event rate, an event that changes nothing, or duplicate names.
    """

    def __init__(
        self,
        species: Sequence[str],
        events: Mapping[str, tuple[str, float]],
        *,
        vacancy: str | None = None,
    ):
        species = tuple(species)
        if not species:
            raise ValueError("LatticeModel: give at least one species")
        if len(species) > MAX_SPECIES:
            raise ValueError(
                f"LatticeModel: at most {MAX_SPECIES} species (int8 codes), got {len(species)}"
            )
        for name in species:
            if not isinstance(name, str) or not _NAME.match(name):
                raise ValueError(
                    f"LatticeModel: species names must be non-empty strings without whitespace "
                    f"that do not start with '-' or '>', got {name!r}"
                )
        if len(set(species)) != len(species):
            raise ValueError(f"LatticeModel: duplicate species names in {species}")
        self.species = species
        self._code = {name: k for k, name in enumerate(species)}
        if vacancy is None:
            vacancy = species[0]
        if vacancy not in self._code:
            raise ValueError(f"LatticeModel: vacancy {vacancy!r} is not one of {species}")
        self.vacancy = vacancy
        if not isinstance(events, Mapping) or not events:
            raise ValueError(
                "LatticeModel: events must be a non-empty mapping name -> (reaction, rate), "
                "e.g. {'adsorption': ('* -> A', 1.0)}"
            )
        parsed = []
        for name, spec in events.items():
            if not isinstance(name, str) or not name:
                raise ValueError(f"LatticeModel: event names must be non-empty strings: {name!r}")
            try:
                reaction, rate = spec
            except (TypeError, ValueError):
                raise ValueError(
                    f"LatticeModel: event {name!r} must be (reaction, rate), got {spec!r}"
                ) from None
            parsed.append(self._parse(name, reaction, rate))
        self.events = tuple(parsed)

    # -- construction --------------------------------------------------------------------

    def _parse(self, name: str, reaction, rate) -> Event:
        where = f"LatticeModel: event {name!r} ({reaction!r})"
        if not isinstance(reaction, str) or reaction.count("->") != 1:
            raise ValueError(
                f"{where}: a reaction is 'A -> B' (site) or 'A B -> C D' (pair), with one '->'"
            )
        left, right = (side.split() for side in reaction.split("->"))
        if len(left) != len(right) or len(left) not in (1, 2):
            raise ValueError(
                f"{where}: need one species on each side (site event) or two on each side "
                f"(pair event), got {len(left)} -> {len(right)}"
            )
        unknown = [s for s in left + right if s not in self._code]
        if unknown:
            raise ValueError(f"{where}: unknown species {unknown}; the species are {self.species}")
        reactants = tuple(self._code[s] for s in left)
        products = tuple(self._code[s] for s in right)
        if reactants == products:
            raise ValueError(f"{where}: the event changes nothing")
        rate = _rate(rate, where, allow_inf=len(left) == 2)
        return Event(name, reactants, products, rate, reaction)

    def with_rates(self, **rates) -> LatticeModel:
        """A copy with some rates changed: ``model.with_rates(reaction=50.0)``.

        Raises:
            KeyError: If a name is not an event of the model.
        """
        names = self.event_names
        bad = [k for k in rates if k not in names]
        if bad:
            raise KeyError(f"with_rates: no event named {bad}; the events are {names}")
        events = {
            e.name: (e.reaction, rates.get(e.name, e.rate)) for e in self.events
        }
        return LatticeModel(self.species, events, vacancy=self.vacancy)

    # -- queries -------------------------------------------------------------------------

    @property
    def event_names(self) -> tuple[str, ...]:
        """Names of the events, in order."""
        return tuple(e.name for e in self.events)

    @property
    def rates(self) -> np.ndarray:
        """Rates of the events, in order, ``(E,)``."""
        return np.array([e.rate for e in self.events], dtype=np.float64)

    @property
    def has_instantaneous(self) -> bool:
        """True if some pair event is instantaneous (infinite rate)."""
        return any(e.instantaneous for e in self.events)

    def code(self, species: str) -> int:
        """The integer code of a species name.

        Raises:
            KeyError: If there is no such species.
        """
        try:
            return self._code[species]
        except KeyError:
            raise KeyError(f"no species {species!r}; the species are {self.species}") from None

    def event_index(self, name: str) -> int:
        """The position of an event in :attr:`events`.

        Raises:
            KeyError: If there is no such event.
        """
        names = self.event_names
        if name not in names:
            raise KeyError(f"no event {name!r}; the events are {names}")
        return names.index(name)

    def mean_field_rhs(self, theta, *, coordination: int = 4, rates=None) -> np.ndarray:
        """Mean-field (site approximation) time derivative of the coverages.

        ``d theta_s / dt`` for all species, with pair densities replaced by products of
        coverages: a pair event ``A B -> C D`` fires per site at ``rate * z * theta_A *
        theta_B`` (``A != B``) or ``rate * z / 2 * theta_A**2`` (``A == B``), ``z`` being
        the coordination number (``z / 2`` bonds per site). This is the exact
        large-lattice limit of the engine's well-mixed mode.

        Args:
            theta: Coverages of all species, ``(S,)`` (summing to 1).
            coordination: Neighbours per site ``z`` (4 on the square lattice, 2 in 1D).
            rates: Event rates ``(E,)`` instead of the model's.

        Returns:
            ``(S,)`` time derivatives.

        Raises:
            ValueError: If a rate is infinite (no mean-field limit of an instantaneous
                event) or ``theta`` has the wrong shape.
        """
        theta = np.asarray(theta, dtype=float)
        if theta.shape != (len(self.species),):
            raise ValueError(
                f"mean_field_rhs: theta must have shape ({len(self.species)},) (all species), "
                f"got {theta.shape}"
            )
        rates = self.rates if rates is None else np.asarray(rates, dtype=float)
        if not np.all(np.isfinite(rates)):
            raise ValueError(
                "mean_field_rhs: an instantaneous (infinite-rate) event has no mean-field "
                "limit; give it a finite rate"
            )
        out = np.zeros_like(theta)
        for event, k in zip(self.events, rates):
            if event.is_pair:
                a, b = event.reactants
                flux = k * coordination * theta[a] * theta[b]
                if a == b:
                    flux *= 0.5
            else:
                flux = k * theta[event.reactants[0]]
            for s in event.reactants:
                out[s] -= flux
            for s in event.products:
                out[s] += flux
        return out

    def __repr__(self) -> str:
        events = ", ".join(f"{e.name}: {e.reaction} @ {e.rate:g}" for e in self.events)
        return f"LatticeModel(species={list(self.species)}, events={{{events}}})"


def _rate(value, where: str, allow_inf: bool) -> float:
    try:
        rate = float(value)
    except (TypeError, ValueError):
        raise ValueError(f"{where}: the rate must be a number, got {value!r}") from None
    if math.isnan(rate) or rate < 0:
        raise ValueError(f"{where}: the rate must be >= 0, got {rate!r}")
    if math.isinf(rate) and not allow_inf:
        raise ValueError(
            f"{where}: only a pair event may be instantaneous (rate inf); give a finite rate"
        )
    return rate


def zgb(
    y: float,
    *,
    reaction_rate: float = math.inf,
    desorption_rate: float = 0.0,
    diffusion_rate: float = 0.0,
) -> LatticeModel:
    """The Ziff-Gulari-Barshad model of CO oxidation on a square lattice.

    Species ``"*"`` (empty), ``"CO"``, ``"O"``; events (Ziff, Gulari & Barshad, Phys. Rev.
    Lett. 56, 2553, 1986):

    * ``CO_adsorption`` ``"* -> CO"`` at rate ``y`` per empty site;
    * ``O2_adsorption`` ``"* * -> O O"`` at rate ``(1 - y) / 2`` per empty nearest-neighbour
      pair;
    * ``reaction`` ``"CO O -> * *"`` (CO2 leaves) at ``reaction_rate`` per CO-O pair,
      instantaneous by default (the original model);
    * optional ``CO_desorption`` ``"CO -> *"`` and CO hopping ``CO_diffusion``
      ``"CO * -> * CO"`` (per CO-empty pair), included when their rate is positive.

    The time unit is the Monte Carlo step (MCS) of the original algorithm, which picks a
    random site N times per MCS and tries a CO adsorption there with probability ``y``, or
    with probability ``1 - y`` an O2 adsorption on it and a random neighbour: an empty pair
    is tried ``2 (1 - y) / 4`` times per MCS. With the instantaneous reaction the
    rejection-free engine makes the same sequence of configurations as the original
    algorithm (failed trials only take time), with the reaction partner of a new adsorbate
    chosen at random among its neighbours. A finite ``reaction_rate`` ``k`` lets CO and O
    coexist as neighbours for a time ``~1/k``; the transition points then shift with ``k``
    (they tend to those of the original model as ``k -> inf``).

    Args:
        y: CO fraction of the gas (``0 <= y <= 1``).
        reaction_rate: Rate of CO + O -> CO2 per neighbouring pair (``inf``: instantaneous).
        desorption_rate: CO desorption rate per CO (0: none, as in the original).
        diffusion_rate: CO hop rate to an empty neighbour, per CO-empty pair (0: none).

    Returns:
        The :class:`LatticeModel`.

    Raises:
        ValueError: If ``y`` is outside ``[0, 1]`` or a rate is invalid.
    """
    y = float(y)
    if not 0.0 <= y <= 1.0:
        raise ValueError(f"zgb: the CO fraction y must be in [0, 1], got {y!r}")
    events = {
        "CO_adsorption": ("* -> CO", y),
        "O2_adsorption": ("* * -> O O", (1.0 - y) / 2.0),
        "reaction": ("CO O -> * *", reaction_rate),
    }
    if _rate(desorption_rate, "zgb: desorption_rate", False) > 0:
        events["CO_desorption"] = ("CO -> *", desorption_rate)
    if _rate(diffusion_rate, "zgb: diffusion_rate", False) > 0:
        events["CO_diffusion"] = ("CO * -> * CO", diffusion_rate)
    return LatticeModel(["*", "CO", "O"], events)
