"""The chat turn: validate, store, build the prompt, generate, store the answer."""
