"""oceand: the elastic-scaling daemon's shell (config, runtime, ingest, engine, admin API, store, replay)."""

__version__ = "0.1.0"
