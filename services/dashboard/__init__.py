"""The web dashboard: server-rendered pages over the results and control services' APIs
(``python -m services.dashboard``)."""
