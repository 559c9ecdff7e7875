"""The HTTP collector: authenticated, rate-limited ingestion of exposure and outcome events.

Services in any language ``POST /v1/events`` with an ``ingest`` (or ``admin``) key; valid
events go to the exposures/outcomes topics once the broker acknowledged them, invalid
ones to the dead-letter topic with the reason. See ``services.collector.api`` for the
HTTP contract and ``README.md`` beside this file for the decisions behind it.
"""
