"""Stable sharding of high-cardinality keys (mention ids) onto a fixed number of Bytewax state keys.

One StatefulLogic per mention id would mean hundreds of thousands of state objects and timers; a few
hundred shards, each holding a dict, keep state compact while still spreading over workers.
The hash must be stable across processes (Python's ``hash`` is salted), hence CRC32.

>>> shard_of("twitter:123"), shard_of("twitter:123") == shard_of("twitter:123")
('s146', True)
"""

from __future__ import annotations

import zlib

__all__ = ["SHARDS", "shard_of"]

SHARDS = 256


def shard_of(key: str, shards: int = SHARDS) -> str:
    return f"s{zlib.crc32(key.encode('utf-8', 'surrogatepass')) % shards}"
