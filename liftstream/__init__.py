"""liftstream's client SDK and CLI.

The SDK (assignment, exposure logging, outcome tracking) imports neither DuckDB, Faust
nor statsmodels, so services can embed it cheaply.
"""
