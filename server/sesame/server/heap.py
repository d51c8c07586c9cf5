"""A worker's heap after boot, kept out of the garbage collector's passes (decision 0052).

Boot leaves a worker with several hundred thousand objects that live as long as it does: modules, gRPC and
protobuf descriptors, the Lua scripts, OpenTelemetry's and prometheus_client's registries. CPython's full
collection walks every tracked object: under load one came every few seconds and held the event loop
150-200 ms, every call in flight waiting behind it (the p99 of an RPC at half the maximum rate). Frozen
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
