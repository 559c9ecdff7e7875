"""The control domain, server side: the control topic's projection and its followers.

- ``control_state``: the projection of the control topic (experiments, flags, metrics,
  holdout, API keys per tenant), the one authority every service reads;
- ``control_log``: reading the control topic and the follower thread that keeps a
  ``ControlState`` current;
- ``api_keys``: key generation and hashing, the key ring;
- ``tenants``: bootstrapping a tenant and its first admin key.

The SDK (``liftstream``) never imports this package.
"""
