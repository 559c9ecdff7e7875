"""Checked-in test vectors shared by the SDK's tests (and SDKs in other languages)."""
