"""The stream processor: workers turning exposures and outcomes into per-variant
sufficient statistics on the aggregates topic.

- ``attribution``: pure per-unit logic (deduplication, exclusion, attribution, differences).
- ``partials``: per-partition running sums and what to publish next.
- ``intake``: one Kafka message to a validated event or a dead letter.
- ``state_codec``: unit states as bytes, for snapshots.
- ``snapshots``: the unit states of a partition on the snapshots topic.
- ``processor``: the worker's logic between those and Kafka.
- ``worker``: ``StreamWorker``, the consumer-group member; ``python -m services.stream``
  runs one.
"""
