"""The gateway's client of the Dagster webserver: transport, GraphQL documents, results."""
