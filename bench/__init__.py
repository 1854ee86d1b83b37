"""ConnectHub's benchmarks: `python -m bench` runs them all and writes docs/benchmarks.md.

See bench/README.md for what each one measures and how to run it.
"""
