"""Webhooks: the receiver's inbox -> a routing sensor -> one run per route per batch -> entities."""
