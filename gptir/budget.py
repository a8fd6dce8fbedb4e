"""Memory estimates of a program's values, so what cannot fit is refused up front, naming the node.

The estimate follows the interpreter's order and frees a value after its last use, counting every value
(views included) at its full size: an upper bound of what running the program holds at once. Pure: the
limit is a parameter (the CLI passes ``GPTIR_MAX_MEMORY``).
"""

from __future__ import annotations

from gptir.ir import GptirError, Graph, Node, TensorType, short


class BudgetError(GptirError):
    """A program's values would need more memory than the limit."""


def value_bytes(ty: TensorType) -> int:
    """Bytes of one value of type ``ty`` (exact integers: shapes may multiply past 2**63)."""
    size = 1
    for d in ty.shape:
        size *= int(d)
    return size * ty.np_dtype.itemsize


def human(n: float) -> str:
    """``74.5 GiB``-style sizes for messages."""
    for unit in ("bytes", "KiB", "MiB", "GiB", "TiB", "PiB", "EiB"):
        if abs(n) < 1024 or unit == "EiB":
            return f"{n:.0f} {unit}" if unit == "bytes" else f"{n:.1f} {unit}"
        n /= 1024
    return f"{n:.1f} EiB"  # pragma: no cover


def peak(graph: Graph) -> tuple[int, Node | None, int, Node | None]:
    """(largest value in bytes, its node, most bytes live at once, the node where that happens)."""
    last: dict[str, int] = {}
    order = list(graph.nodes.values())
    for pos, node in enumerate(order):
        for i in node.inputs:
            last[i] = pos
    keep = set(graph.outputs.values())
    dead_after: dict[int, list[str]] = {}
    for name, pos in last.items():
        if name not in keep:
            dead_after.setdefault(pos, []).append(name)
    live: dict[str, int] = {}
    total, biggest, big_node, most, most_node = 0, 0, None, 0, None
    for pos, node in enumerate(order):
        size = value_bytes(node.type)
        if size > biggest:
            biggest, big_node = size, node
        live[node.name] = size
        total += size
        if total > most:
            most, most_node = total, node
        for name in dead_after.get(pos, ()):
            total -= live.pop(name, 0)
    return biggest, big_node, most, most_node


def check_fits(graph: Graph, limit: int, how: str = "set GPTIR_MAX_MEMORY to raise the limit") -> None:
    """Raise :class:`BudgetError` naming the node whose value alone exceeds ``limit`` bytes, or the node at
    which the values live at once (in the interpreter's order) exceed it."""
    biggest, big_node, most, most_node = peak(graph)
    if big_node is not None and biggest > limit:
        raise BudgetError(f"out of memory: {_describe(big_node)} needs {human(biggest)} for its value, more than the "
                          f"{human(limit)} memory limit ({how})")
    if most_node is not None and most > limit:
        raise BudgetError(f"out of memory: the program's values need {human(most)} at once "
                          f"(at {_describe(most_node)}), more "
                          f"than the {human(limit)} memory limit ({how})")


def _describe(node: Node) -> str:
    return f"%{short(node.name)} = {node.op} : {node.type}" + (f" (from {short(node.loc)})" if node.loc else "")
