"""Passwords, tokens, keys and the server secret they all derive from."""
