"""Several daemons (PRODUCT §11, /work/shared/design/HA.md): shards, leases in MySQL, fenced actuation.

- `ids`: instance and stable ids, `shard_of(job)` (blake2b, never Python's salted `hash()`).
- `assign`: rendezvous assignment of shards to live members and the release/acquire plan (pure).
- `intent`: the actuation intent's state machine, the gate and the takeover adopt/abandon verdict (pure).
- `lease`: the MySQL lease loop on the database clock; `may_act(shard)` on the local monotonic clock.

Single-daemon mode (no `[cluster]`, or `enabled = false`) imports none of this at run time.
"""
