"""monGARS: a self-hosted conversational-AI gateway."""

__version__ = "0.1.0"
