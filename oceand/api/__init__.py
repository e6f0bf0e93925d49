"""The HTTP surface: Falcon ingest, the admin API, OpenAPI."""
