"""Development tools: the demo and a local Kafka, for the demo, the tests and the benchmarks.

Not part of the product: nothing in ``transforms`` or ``pipelines`` imports
them, and their extra dependencies are in the ``dev`` extra of setup.py.
The local Stream Load server is its own package, ``stream_load_emulator``.
"""
