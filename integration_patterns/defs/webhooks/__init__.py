"""Webhooks: the receiver's inbox -> a routing sensor -> batches per route, sharing runs -> entities."""
