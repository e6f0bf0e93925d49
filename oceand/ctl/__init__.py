"""`oceanctl`, the operator's command line (PRODUCT §12): a client of the admin API, nothing more."""
