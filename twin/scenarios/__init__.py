"""What-if scenarios over the twin: the ``city.scenarios`` namespace, figures, pre-plans, drills.

The store's side (the overlay of edits, ``using()``) is :mod:`layers.scenarios`.
"""
