"""Input adapters: Falcon push and alarm parsing (pure), Marathon event stream, L7 balancer statistics."""
