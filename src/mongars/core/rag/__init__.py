"""Retrieval-augmented generation: documents in, chunks and vectors stored, passages out."""
