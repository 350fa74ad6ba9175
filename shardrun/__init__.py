"""shardrun: balanced, timing-aware test sharding over Redis/RQ."""

__version__ = "0.1.0"
