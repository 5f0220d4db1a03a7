"""Webhooks: the inbox -> a routing sensor -> batches per route, sharing runs -> entities."""
