"""The stream processor: a Faust worker turning exposures and outcomes into per-variant
sufficient statistics on the aggregates topic.

- ``attribution``: pure per-unit logic (deduplication, exclusion, attribution, differences).
- ``partials``: per-partition running sums and what to publish next.
- ``intake``: one Kafka message to a validated event or a dead letter.
- ``state_codec``: the unit state's bytes in the table changelog.
- ``processor``: the worker's logic between those and Kafka.
- ``consumer``: Faust's Kafka consumer, rewinding partitions without a committed offset.
- ``app``: ``create_app(settings)``, the Faust app; ``python -m services.stream`` runs it.
"""
