"""The results service: sole owner of the DuckDB file, fed from Kafka, serving scorecards.

A loader thread projects the exposures, outcomes, aggregates, control and dead-letter
topics into DuckDB (``analytics.store``); a FastAPI app serves progress, experiments and
scorecards from the same connection, to API keys of the tenant asked about (the keys are
followed from the control topic, ``services.control_domain.api_keys``). Run it with
``python -m services.results``.
"""
