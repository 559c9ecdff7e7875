"""The control service: the control plane's API over the projection of the control topic.

Tenants' admins define and change experiments and flags here; every change is checked
against the projection, written as an event to the control topic, and answered once
applied. SDKs fetch their tenant's configuration snapshot (ETag, 304). Run it with
``python -m services.control``.
"""
