"""Customer enrichment: PostgreSQL customers + MongoDB events -> scored analytics table."""
