"""The model-backend tests use the session fixtures of ``tests/model_fixtures.py``
(``embedded``, ``llama_server``), shared with the API tests."""
