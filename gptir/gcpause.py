"""Big graph passes allocate many objects that all stay alive (nodes, types, attribute dicts); the
cyclic garbage collector then rescans the whole growing heap again and again, which made grad and
optimize of a 100,000-node graph superlinear. :func:`gc_paused` runs a pass with the collector off
(reference counting still frees everything acyclic at once) and restores it afterwards."""

from __future__ import annotations

import functools
import gc
from typing import Any, Callable, TypeVar

F = TypeVar("F", bound=Callable[..., Any])


def gc_paused(fn: F) -> F:
    """``fn`` run with the cyclic collector paused (as it was before, afterwards, even on error)."""

    @functools.wraps(fn)
    def run(*args: Any, **kwargs: Any) -> Any:
        was_enabled = gc.isenabled()
        gc.disable()
        try:
            return fn(*args, **kwargs)
        finally:
            if was_enabled:
                gc.enable()

    return run  # type: ignore[return-value]
