"""Effect adapters: Marathon, load balancers (LVS, nginx, HAProxy), dry-run recording."""
