"""The running parts of liftstream, one package each: broker (local Kafka), stream
(Faust worker), results (DuckDB owner and results API)."""
