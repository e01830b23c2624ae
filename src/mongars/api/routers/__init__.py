"""HTTP routers: thin, one per area of the API."""
