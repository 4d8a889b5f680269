"""Failover benchmark: this router vs LiveKit's FallbackAdapter, LiteLLM's Router and a naive loop."""
