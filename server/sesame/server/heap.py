"""A worker's heap after boot, kept out of the garbage collector's passes (decision 0052).

Boot leaves a worker with about 82,000 tracked objects that live as long as it does: modules, gRPC and
protobuf descriptors, the Lua scripts, OpenTelemetry's and prometheus_client's registries. CPython's full
collection walks every tracked object: under load one came every 10-20 s and held the event loop 40-940 ms
on a loaded machine, every call in flight waiting behind it (the tail of an RPC's latency). Frozen
(`gc.freeze`), those objects are never walked again; a full collection walks what calls allocated since,
and cycles among those are still collected.
"""

from __future__ import annotations

import gc


def freeze_boot_heap() -> int:
    """Collect what boot left behind, then move every object alive now out of the collector's passes.

    Called once, after boot and before the first call. Returns how many objects were frozen.
    """
    gc.collect()
    gc.freeze()
    return gc.get_freeze_count()
