"""The UI's pages, one module per area. Every view is async: the API calls are httpx requests
awaited on the server's own event loop (in-process, the API runs on that same loop)."""
