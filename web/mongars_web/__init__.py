"""monGARS's Django chat UI: a client of the HTTP API that works without JavaScript and streams
over the WebSocket with it.

``mongars serve`` runs it in the API's own ASGI app (``mongars.web_mount``); ``mongars web
--api-url URL`` runs it alone against a remote API. Either way the browser only ever holds a
session cookie and, with JavaScript, short-lived single-use WebSocket tickets: the API's access
and refresh tokens stay in the server-side session.
"""
