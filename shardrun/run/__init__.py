"""Running: one run session for `shardrun run` and `shardrun ci`.

`coordinator` plans, publishes the batches and watches them to the end; `ci_node` is the
same session when the build's nodes elect a leader through Redis (`ci_env` says which
build and node this is); `watch` is the loop that waits on results and leases; `ledger`
decides retries; `pool` and `embedded` start local workers and a private redis-server for
a laptop run.
"""
