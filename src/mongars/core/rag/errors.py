"""RAG's domain errors (statuses and codes for the one error handler)."""

from __future__ import annotations

from mongars.core.errors import MongarsError, ServiceUnavailable


class DocumentRejected(MongarsError):
    """The file cannot be ingested: empty, binary, corrupt. The detail names the problem."""

    status_code = 422
    code = "document_rejected"
    default_detail = "The document cannot be ingested."


class UnsupportedDocumentType(MongarsError):
    status_code = 415
    code = "unsupported_document_type"
    default_detail = "This type of file is not supported."


class DocumentTooLarge(MongarsError):
    status_code = 413
    code = "document_too_large"
    default_detail = "The document is too large."


class RagDisabled(ServiceUnavailable):
    code = "rag_disabled"
    default_detail = "Documents and retrieval are turned off on this server (MONGARS_RAG__ENABLED)."
