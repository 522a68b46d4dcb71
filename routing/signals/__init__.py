"""Traffic-signal optimisation, proven in SUMO."""
