"""Pin sets as policy: readers for the places apps and proxies declare SPKI pins, and their lint.

:mod:`tlsdetect.pins.policy` is the entry point (one table for every format); each format has
its own reader module, and :mod:`tlsdetect.pins.lint` says whether a pin set is safe to ship.
"""
