"""Runs: the cases and their grid (:mod:`.cases`), the sweep (:mod:`.sweep`) and the
result format it writes (:mod:`.resultformat`)."""
