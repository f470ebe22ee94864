"""The fuzzing harness: atheris (libFuzzer) over every parser of untrusted bytes, a child per target.

Not part of the shipped package (``tlsdetect*`` only is packaged): it lives beside ``tests/`` because
it is a test tool with its own command (``python -m fuzz``), its seeds (``seeds/``) and the inputs it
ever found (``crashes/``, replayed by ``tests/test_fuzz_regressions.py``). See README "Fuzzing".
"""
