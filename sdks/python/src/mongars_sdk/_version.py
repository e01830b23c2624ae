__version__ = "0.1.0"
# The server API version this release was built against (openapi.json's info.version).
API_VERSION = "0.1.0"
