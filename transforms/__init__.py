"""The IO pieces of the Kafka -> Doris/StarRocks loader, each usable on its own.

Four IO packages stand side by side, none importing another: ``kafka`` (read, commit offsets,
drain requests), ``records`` (parse and route), ``batching`` (per-table batches),
``stream_load`` (the client and the sink). Above them, ``schema`` (tables follow their rows:
``EvolveSchema``) and ``delivery`` (exactly-once across crashes: the load journal as the sink's
write-ahead log). Under them the shared ground: ``types`` (the elements that travel between
them), ``errors`` (whose fault a failure is), ``runtime`` (one object per worker: stop, monitor,
shared state), ``metrics``, ``monitoring``, ``operations``, ``sharding``, ``dead_letters``.
Nothing here imports ``pipelines``, which composes them (``pipelines/assembly.py``).
"""
