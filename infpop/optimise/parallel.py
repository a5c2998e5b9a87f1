"""Independent searches spread over processes (the replay and the study are CPU-bound)."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from concurrent.futures import ProcessPoolExecutor


def map_in_processes(function: Callable, items: list, processes: int) -> Iterator:
    """function(item) for each item, in order, on up to `processes` processes (here if 1)."""
    if processes > 1 and len(items) > 1:
        with ProcessPoolExecutor(max_workers=processes) as pool:
            yield from pool.map(function, items, chunksize=1)
    else:
        yield from map(function, items)
