"""The IO pieces of the Kafka -> Doris/StarRocks loader, each usable on its own.

``kafka`` (read, commit offsets), ``records`` (parse and route), ``batching``
(per-table batches), ``stream_load`` (the client and the sink), ``delivery``
(exactly-once across crashes), ``dead_letters``, ``metrics``; ``types`` holds
the elements that travel between them.  Nothing here imports ``pipelines``.
"""
