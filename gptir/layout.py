"""A layered (Sugiyama-style) graph layout, written for gptir's pictures: no Graphviz needed.

:func:`layered_layout` takes node ids in topological order, edges, node widths and an optional
cluster path per node (the nested boxes a node sits in, outermost first) and returns positions:

1. **Ranks.** Clusters are ranked as bands (each ranked inside, then stacked as one block among its
   siblings), so the boxes of clusters joined by an edge never share a rank; then greedy moves inside
   the bands shorten edges (a constant sits just above its user).
2. **Dummies.** An edge spanning k ranks becomes a chain through k-1 dummy nodes (its bends).
   A dummy sits in the innermost cluster both ends share.
3. **Ordering.** Alternating down and up sweeps sort each rank by the barycenter of its neighbours in
   the rank just swept, *grouped by cluster* (a cluster is sorted as one unit at the mean of its
   members, recursively), so every cluster stays contiguous in every rank. The ordering with the
   fewest crossings (counted exactly per pair of ranks with a Fenwick tree) is kept.
4. **Coordinates.** Nodes are packed left to right with gaps that leave room for cluster borders,
   then pulled toward the mean of their neighbours: per rank, the closest positions that keep the
   order and the gaps (a weighted isotonic regression, pool-adjacent-violators, O(n) per rank).

Everything is linear or n log n per sweep, so 10,000 nodes lay out in a few seconds of pure Python.
Pure: no IO, deterministic (ties break by input order).
"""

from __future__ import annotations

import heapq
from dataclasses import dataclass, field
from typing import Mapping, Sequence

Point = tuple[float, float]
ClusterPath = tuple[str, ...]

NODE_HEIGHT = 36.0
RANK_GAP = 40.0  # vertical space between ranks (room for edges and a cluster label)
NODE_GAP = 18.0  # horizontal gap between neighbours of one rank
CLUSTER_PAD = 8.0  # border of a cluster box around its members, per nesting level
DUMMY_WIDTH = 6.0
MARGIN = 16.0


@dataclass
class Layout:
    """Positions: node centres ``x``/``y`` (a node is ``widths[v]`` wide and :data:`NODE_HEIGHT` high),
    each edge's route from the bottom of its source to the top of its target (through its dummies),
    each cluster's box ``(x0, y0, x1, y1)``, the total size, and the crossings of the chosen order."""

    x: dict[str, float] = field(default_factory=dict)
    y: dict[str, float] = field(default_factory=dict)
    rank: dict[str, int] = field(default_factory=dict)
    routes: dict[tuple[str, str], list[Point]] = field(default_factory=dict)
    boxes: dict[ClusterPath, tuple[float, float, float, float]] = field(default_factory=dict)
    width: float = 0.0
    height: float = 0.0
    crossings: int = 0
    order: list[list[str]] = field(default_factory=list)  # real nodes per rank, left to right
    long_edges: set[tuple[str, str]] = field(default_factory=set)  # routed straight, beyond the dummy budget


def layered_layout(nodes: Sequence[str], edges: Sequence[tuple[str, str]], widths: Mapping[str, float],
                   clusters: Mapping[str, ClusterPath] | None = None, *, sweeps: int = 8,
                   node_height: float = NODE_HEIGHT, rank_gap: float = RANK_GAP,
                   dummy_budget: int | None = None) -> Layout:
    """Lay out a DAG (see the module docstring). ``nodes`` must be topologically ordered for the edges
    (every edge goes from an earlier node to a later one); duplicate edges and self-loops are ignored.

    At most ``dummy_budget`` dummies are made (default ``3 * len(nodes) + 500``, ``len(nodes) + 4500`` past 2,000 nodes): the longest edges
    beyond it (in a training step, forward values read by the far end of the backward pass) take no
    part in the ordering and are routed straight from source to target (``Layout.long_edges``). This
    bounds time and memory: a deep model's quadratic number of bends would otherwise dominate."""
    n = len(nodes)
    index = {v: i for i, v in enumerate(nodes)}
    succ: list[list[int]] = [[] for _ in range(n)]
    pred: list[list[int]] = [[] for _ in range(n)]
    seen: set[tuple[int, int]] = set()
    for eu, ev in edges:
        a, b = index[eu], index[ev]
        if a == b or (a, b) in seen:
            continue
        if a > b:
            raise ValueError(f"edge {eu!r} -> {ev!r} goes against the node order (give nodes topologically)")
        seen.add((a, b))
        succ[a].append(b)
        pred[b].append(a)
    path: list[ClusterPath] = [tuple((clusters or {}).get(v, ())) for v in nodes]

    rank = _ranks(n, pred, succ, path)
    # dummies: chains for long edges
    width: list[float] = [float(widths.get(v, 40.0)) for v in nodes]
    up: list[list[int]] = [[] for _ in range(n)]
    down: list[list[int]] = [[] for _ in range(n)]
    chains: dict[tuple[int, int], list[int]] = {}
    origin: list[float] = [float(i) for i in range(n)]  # initial ordering key
    max_span = _max_span(n, succ, rank, dummy_budget)
    long_edges: list[tuple[int, int]] = []
    for a in range(n):
        for b in succ[a]:
            prev, chain = a, []
            if rank[b] - rank[a] > max_span:
                long_edges.append((a, b))
                continue
            if rank[b] - rank[a] > 1:
                common = _common(path[a], path[b])
                for r in range(rank[a] + 1, rank[b]):
                    d = len(rank)
                    rank.append(r)
                    path.append(common)
                    width.append(DUMMY_WIDTH)
                    origin.append(a + 0.5)
                    up.append([prev])
                    down.append([])
                    down[prev].append(d)
                    chain.append(d)
                    prev = d
            down[prev].append(b)
            up[b].append(prev)
            chains[(a, b)] = chain
    total = len(rank)
    layers: list[list[int]] = [[] for _ in range(max(rank, default=-1) + 1)]
    for v in sorted(range(total), key=lambda v: origin[v]):
        layers[rank[v]].append(v)

    pos = [0] * total
    prefixes = [[p[:d] for d in range(1, len(p) + 1)] for p in path]
    for layer in layers:
        _grouped_sort(layer, path, {v: origin[v] for v in layer}, 0, prefixes)
        for i, v in enumerate(layer):
            pos[v] = i
    best = [list(layer) for layer in layers]
    best_cross = _crossings(layers, down, pos)
    if total > 15000:  # big graphs: fewer sweeps (each is linear, but Python is slow)
        sweeps = min(sweeps, 3)
    for sweep in range(sweeps):
        if best_cross == 0:
            break
        downward = sweep % 2 == 0
        seq = range(1, len(layers)) if downward else range(len(layers) - 2, -1, -1)
        for r in seq:
            layer = layers[r]
            key: dict[int, float] = {}
            for v in layer:
                nb = up[v] if downward else down[v]
                key[v] = sum(pos[u] for u in nb) / len(nb) if nb else float(pos[v])
            _grouped_sort(layer, path, key, 0, prefixes)
            for i, v in enumerate(layer):
                pos[v] = i
        c = _crossings(layers, down, pos)
        if c < best_cross:
            best_cross, best = c, [list(layer) for layer in layers]
    layers = best
    for layer in layers:
        for i, v in enumerate(layer):
            pos[v] = i

    xs = _coordinates(layers, up, down, width, path, 8 if total <= 15000 else 3)
    step = node_height + rank_gap
    ys = [MARGIN + 24.0 + node_height / 2 + rank[v] * step for v in range(total)]
    # cluster boxes around their member nodes
    boxes: dict[ClusterPath, list[float]] = {}
    for v in range(n):  # real nodes only: an inner edge's bends may graze the border
        p = path[v]
        half_w, half_h = width[v] / 2, node_height / 2
        for depth in range(1, len(p) + 1):
            pad = CLUSTER_PAD * (len(p) - depth + 1)
            x0, x1 = xs[v] - half_w - pad, xs[v] + half_w + pad
            y0, y1 = ys[v] - half_h - pad - 14.0, ys[v] + half_h + pad
            box = boxes.get(p[:depth])
            if box is None:
                boxes[p[:depth]] = [x0, y0, x1, y1]
            else:
                box[0], box[1], box[2], box[3] = min(box[0], x0), min(box[1], y0), max(box[2], x1), max(box[3], y1)
    # shift everything right of the margin
    left = min([xs[v] - width[v] / 2 for v in range(total)] + [b[0] for b in boxes.values()], default=0.0)
    shift = MARGIN - left
    out = Layout()
    for i, nv in enumerate(nodes):
        out.x[nv], out.y[nv], out.rank[nv] = xs[i] + shift, ys[i], rank[i]
    half = node_height / 2
    for (a, b), chain in chains.items():
        pts: list[Point] = [(xs[a] + shift, ys[a] + half)]
        for d in chain:
            pts.append((xs[d] + shift, ys[d] - half))
            pts.append((xs[d] + shift, ys[d] + half))
        pts.append((xs[b] + shift, ys[b] - half))
        out.routes[(nodes[a], nodes[b])] = pts
    out.boxes = {p: (b[0] + shift, b[1], b[2] + shift, b[3]) for p, b in boxes.items()}
    right = max([xs[v] + width[v] / 2 + shift for v in range(total)] + [b[2] for b in out.boxes.values()],
                default=0.0)
    out.width = right + MARGIN
    out.height = (max(ys, default=0.0) + half + MARGIN) if total else 2 * MARGIN
    out.crossings = best_cross
    for a, b in long_edges:
        out.routes[(nodes[a], nodes[b])] = [(xs[a] + shift, ys[a] + half), (xs[b] + shift, ys[b] - half)]
        out.long_edges.add((nodes[a], nodes[b]))
    out.order = [[nodes[v] for v in layer if v < n] for layer in layers]
    return out


def _ranks(n: int, pred: list[list[int]], succ: list[list[int]], path: list[ClusterPath]) -> list[int]:
    """Ranks in two steps. First *bands*: each cluster is ranked inside (recursively) and then stacked
    as one block of its height among its siblings and the loose nodes beside it (a longest path over
    those units), so the boxes of two clusters joined by an edge never share a rank. Where the units
    of a level form a cycle, that level is ranked flat. Then greedy moves that shorten edges (a cheap
    stand-in for network simplex), each node kept inside its cluster's band: a *follower* (a node
    whose only user is one node and whose operands are all followers: a constant, ``broadcast(const)``)
    sits just above its user; a node with at least as many out-edges as non-follower in-edges moves
    down to just above its first user, one with more in-edges than out-edges up below its last operand."""
    local, _, bounds = _band(list(range(n)), 0, pred, path)
    rank = [local[v] for v in range(n)]
    lo = [bounds[v][0] for v in range(n)]
    hi = [bounds[v][1] for v in range(n)]
    follower = [False] * n
    for v in range(n):
        follower[v] = len(succ[v]) == 1 and all(follower[u] for u in pred[v])

    def down(v: int) -> None:
        target = min(min(rank[w] for w in succ[v]) - 1, hi[v])
        if target > rank[v]:
            rank[v] = target

    for _ in range(2):
        for v in range(n - 1, -1, -1):
            if succ[v] and (follower[v] or len(succ[v]) >= sum(1 for u in pred[v] if not follower[u])):
                down(v)
        for v in range(n):
            if pred[v] and not follower[v] and len(pred[v]) > len(succ[v]):
                target = max(max(rank[u] for u in pred[v]) + 1, lo[v])
                if target < rank[v]:
                    rank[v] = target
    for v in range(n - 1, -1, -1):
        if succ[v] and (follower[v] or not pred[v]):
            down(v)
    return rank


def _band(members: list[int], depth: int, pred: list[list[int]], path: list[ClusterPath]
          ) -> tuple[dict[int, int], int, dict[int, tuple[int, int]]]:
    """Local ranks of ``members`` (topologically ordered) inside their cluster at ``depth``, the band's
    height, and each member's allowed rank range (its innermost cluster's band)."""
    inside = set(members)
    groups: dict[str, list[int]] = {}
    unit: dict[int, int] = {}  # member -> unit id (direct nodes: their own, clusters: shared)
    units: list[tuple[str | None, int]] = []  # (cluster name or None, first member)
    cid: dict[str, int] = {}
    for v in members:
        if len(path[v]) > depth:
            name = path[v][depth]
            if name not in cid:
                cid[name] = len(units)
                units.append((name, v))
                groups[name] = []
            groups[name].append(v)
            unit[v] = cid[name]
        else:
            unit[v] = len(units)
            units.append((None, v))
    inner: dict[str, tuple[dict[int, int], int, dict[int, tuple[int, int]]]] = {
        name: _band(ms, depth + 1, pred, path) for name, ms in groups.items()}
    span = [inner[name][1] if name is not None else 1 for name, _ in units]
    # the unit graph, in topological order (Kahn, earliest unit first)
    upreds: list[set[int]] = [set() for _ in units]
    for v in members:
        for u in pred[v]:
            if u in inside and unit[u] != unit[v]:
                upreds[unit[v]].add(unit[u])
    users: list[list[int]] = [[] for _ in units]
    pending = [len(p) for p in upreds]
    for w, ps in enumerate(upreds):
        for p in ps:
            users[p].append(w)
    ready = [w for w in range(len(units)) if not pending[w]]
    heapq.heapify(ready)
    start = [0] * len(units)
    done = 0
    while ready:
        w = heapq.heappop(ready)
        done += 1
        start[w] = max((start[p] + span[p] for p in upreds[w]), default=0)
        for x in users[w]:
            pending[x] -= 1
            if not pending[x]:
                heapq.heappush(ready, x)
    local: dict[int, int] = {}
    bounds: dict[int, tuple[int, int]] = {}
    if done < len(units):  # the clusters of this level are tangled: rank it flat
        for v in members:
            local[v] = max((local[u] + 1 for u in pred[v] if u in inside), default=0)
        height = max(local.values(), default=-1) + 1
        return local, height, {v: (0, height - 1) for v in members}
    height = max((start[w] + span[w] for w in range(len(units))), default=0)
    for v in members:
        uname = units[unit[v]][0]
        off = start[unit[v]]
        if uname is None:
            local[v], bounds[v] = off, (0, height - 1)
        else:
            loc, _, bnd = inner[uname]
            local[v] = off + loc[v]
            bounds[v] = (off + bnd[v][0], off + bnd[v][1])
    return local, height, bounds


def _max_span(n: int, succ: list[list[int]], rank: list[int], budget: int | None) -> int:
    """The longest edge span that still gets dummies, so that their total stays within ``budget``."""
    budget = (3 * n + 500 if n <= 2000 else n + 4500) if budget is None else budget
    spans = sorted(rank[b] - rank[a] for a in range(n) for b in succ[a])
    used = 0
    for i, s in enumerate(spans):
        used += max(s - 1, 0)
        if used > budget:
            return max(spans[i - 1] if i else 1, 1)
    return max(spans, default=1)


def _common(a: ClusterPath, b: ClusterPath) -> ClusterPath:
    k = 0
    while k < len(a) and k < len(b) and a[k] == b[k]:
        k += 1
    return a[:k]


def _grouped_sort(layer: list[int], path: list[ClusterPath], key: Mapping[int, float], depth: int = 0,
                  prefixes: list[list[ClusterPath]] | None = None) -> None:
    """Sort ``layer`` in place by ``key``, keeping each cluster (at every depth) contiguous: a cluster
    moves as one unit at the mean key of its members in this rank. Stable (ties keep the current order).

    Done as one sort on composite keys: a node's key is, per level of its cluster path, the (mean key,
    first position) of its cluster at that level, then its own (key, position)."""
    pre = prefixes if prefixes is not None else [[p[:d] for d in range(1, len(p) + 1)] for p in path]
    sums: dict[ClusterPath, list[float]] = {}
    for i, v in enumerate(layer):
        k = key[v]
        for c in pre[v]:
            acc = sums.get(c)
            if acc is None:
                sums[c] = [k, 1.0, float(i)]
            else:
                acc[0] += k
                acc[1] += 1.0
    means = {c: (acc[0] / acc[1], acc[2]) for c, acc in sums.items()}
    composite = {}
    for i, v in enumerate(layer):
        composite[v] = tuple(means[c] for c in pre[v]) + ((key[v], float(i)),)
    layer.sort(key=composite.__getitem__)


def _crossings(layers: list[list[int]], down: list[list[int]], pos: list[int]) -> int:
    """Exact number of edge crossings between consecutive ranks (inversions, via a Fenwick tree)."""
    total = 0
    for r in range(len(layers) - 1):
        pairs = sorted((pos[u], pos[w]) for u in layers[r] for w in down[u])
        size = len(layers[r + 1]) + 1
        tree = [0] * (size + 1)
        seen = 0
        for _, q in pairs:
            # count earlier edges whose lower end is strictly right of q
            i, le = q + 1, 0
            while i > 0:
                le += tree[i]
                i -= i & -i
            total += seen - le
            i = q + 1
            while i <= size:
                tree[i] += 1
                i += i & -i
            seen += 1
    return total


def _coordinates(layers: list[list[int]], up: list[list[int]], down: list[list[int]], width: list[float],
                 path: list[ClusterPath], iterations: int = 8) -> list[float]:
    xs = [0.0] * len(width)
    seps: list[list[float]] = []
    for layer in layers:
        sep = [0.0]
        for a, b in zip(layer, layer[1:]):
            common = len(_common(path[a], path[b]))
            borders = (len(path[a]) - common) + (len(path[b]) - common)
            sep.append((width[a] + width[b]) / 2 + NODE_GAP + CLUSTER_PAD * borders)
        seps.append(sep)
        x = 0.0
        for v, s in zip(layer, sep):
            x += s
            xs[v] = x
    # centre the ranks on each other before pulling
    widest = max((xs[layer[-1]] for layer in layers if layer), default=0.0)
    for layer in layers:
        if layer:
            off = (widest - xs[layer[-1]]) / 2
            for v in layer:
                xs[v] += off
    order = list(range(len(layers)))
    for it in range(iterations):
        seq = order if it % 2 == 0 else order[::-1]
        both = it >= iterations - 2
        for r in seq:
            layer = layers[r]
            target, weight = [], []
            for v in layer:
                nb = (up[v] + down[v]) if both else (up[v] if it % 2 == 0 else down[v])
                if nb:
                    target.append(sum(xs[u] for u in nb) / len(nb))
                    weight.append(len(nb) * (4.0 if width[v] == DUMMY_WIDTH else 1.0))
                else:
                    target.append(xs[v])
                    weight.append(0.25)
            for v, x in zip(layer, _isotonic(target, weight, seps[r])):
                xs[v] = x
    return xs


def _isotonic(target: list[float], weight: list[float], sep: list[float]) -> list[float]:
    """Positions closest to ``target`` (weighted least squares) with ``x[i] - x[i-1] >= sep[i]``:
    substitute y = x - cumulative(sep), then pool adjacent violators on y."""
    offs: list[float] = []
    c = 0.0
    for s in sep:
        c += s
        offs.append(c)
    blocks: list[list[float]] = []  # [mean, weight, count]
    for t, w, o in zip(target, weight, offs):
        blocks.append([t - o, w, 1])
        while len(blocks) > 1 and blocks[-2][0] >= blocks[-1][0]:
            m2, w2, c2 = blocks.pop()
            m1, w1, c1 = blocks[-1]
            wt = w1 + w2
            blocks[-1] = [(m1 * w1 + m2 * w2) / wt, wt, c1 + c2]
    out: list[float] = []
    for m, _, cnt in blocks:
        out.extend([m] * int(cnt))
    return [y + o for y, o in zip(out, offs)]
