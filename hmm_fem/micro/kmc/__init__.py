"""Lattice kinetic Monte Carlo (rejection-free), e.g. the ZGB model of CO oxidation."""
