"""The library behind results: the DuckDB schema and queries, and ``stats`` (pure,
vectorised functions of sufficient statistics)."""
