"""Measurement: the measuring loop (:mod:`.engine`), its statistics (:mod:`.stats`), the time
model (:mod:`.timemodel`), the environment record (:mod:`.environment`) and host memory's
defined state (:mod:`.host_memory`)."""
