"""The gateway's endpoints, one module per resource of the API."""
