"""Runs: the cases and their grid (:mod:`.cases`), the sweep (:mod:`.sweep`), the result
format it writes (:mod:`.resultformat`) and the larger-than-memory gradient
(:mod:`.out_of_core`)."""
