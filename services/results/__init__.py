"""The results service: sole owner of the DuckDB file, fed from Kafka, serving scorecards.

A loader thread projects the exposures, outcomes, aggregates, control and dead-letter
topics into DuckDB (``analytics.store``); a FastAPI app serves progress, experiments and
scorecards from the same connection. Run it with ``python -m services.results``.
"""
