"""Validation and convex decomposition of spherical polygons (private).

A polygon arrives as vertex unit vectors joined by minor great-circle arcs.  It leaves
validated (no coincident or antipodal neighbours, no fold-back, no self-intersection, inside an
open hemisphere), oriented counter-clockwise seen from outside the sphere (interior on the
left, the smaller of the two regions its boundary separates), and cut into convex pieces.
A convex piece is the intersection of the hemispheres ``p · n ≥ 0`` of its edges' inward unit
normals ``n``; the polygon is the union of its pieces.

Preparing a polygon is on the path of every ADQL query that names one, so the per-vertex work
is done on tuples of Python floats with explicit component arithmetic: ``numpy.cross`` and
``numpy.linalg.norm`` cost microseconds per call on single 3-vectors, and a four-vertex
polygon needs about seventy of them.  The one step whose work grows with the square of the
vertex count, the search for crossing edges, sorts out the pairs that cannot cross with
numpy for all pairs at once when there are many vertices.  ``tests/sky/test_polygon_fast.py``
compares the result with the former numpy implementation (``tests/sky/_polygon_reference.py``).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from skyvault.errors import GeometryError
from skyvault.sky._vector import ON_CIRCLE_EPS, FloatArray, arc_crossings, det3, unit

#: Edges shorter than this (radians, about 0.2 µas) are taken as coincident vertices.
MIN_EDGE = 1e-12
#: |sin(turning angle)| below this marks a vertex where the boundary runs straight on.
STRAIGHT = 1e-12
#: Vertices must lie this far (dot product) inside the open hemisphere that holds them.
HEMISPHERE_MARGIN = 1e-9
MAX_VERTICES = 2000
#: Steps of the classic perceptron tried when the quick centre search fails (enough for
#: vertices 89.5° from a centre).
_PERCEPTRON_STEPS = 20_000
#: Up to this many vertices, pairs of edges are screened one by one for crossings; above it,
#: all pairs at once with numpy, in blocks of this many edges.
_PAIRWISE_LIMIT = 32
#: A pair of edges is set aside as unable to cross only when each edge's ends lie on one side
#: of the other's great circle by this much more than :func:`arc_crossings` requires, so that
#: rounding differences between the screen and that function cannot hide a crossing.
_SCREEN_EPS = ON_CIRCLE_EPS + 1e-14

Vec = tuple[float, float, float]


def _cross(a: Vec, b: Vec) -> Vec:
    return (a[1] * b[2] - a[2] * b[1], a[2] * b[0] - a[0] * b[2], a[0] * b[1] - a[1] * b[0])


def _dot(a: Vec, b: Vec) -> float:
    return a[0] * b[0] + a[1] * b[1] + a[2] * b[2]


def _add(a: Vec, b: Vec) -> Vec:
    return (a[0] + b[0], a[1] + b[1], a[2] + b[2])


def _sub(a: Vec, b: Vec) -> Vec:
    return (a[0] - b[0], a[1] - b[1], a[2] - b[2])


def _norm(a: Vec) -> float:
    return math.sqrt(a[0] * a[0] + a[1] * a[1] + a[2] * a[2])


def _unit(a: Vec) -> Vec:
    n = _norm(a)
    return (a[0] / n, a[1] / n, a[2] / n)


def _edge_normal(a: Vec, b: Vec) -> Vec:
    """Unit normal of the great circle through ``a`` then ``b``: ``(a + b) × (b − a)``, which
    stays accurate for tiny edges (as :func:`skyvault.sky._vector.edge_normal`)."""
    return _unit(_cross(_add(a, b), _sub(b, a)))


def _arc_angle(a: Vec, b: Vec) -> float:
    return math.atan2(_norm(_cross(a, b)), _dot(a, b))


@dataclass(frozen=True)
class PreparedPolygon:
    """A validated polygon: CCW vertices, a centre of its hemisphere, convex pieces."""

    xyz: FloatArray
    centre: FloatArray
    pieces: tuple[FloatArray, ...]
    piece_vertices: tuple[tuple[int, ...], ...]

    @property
    def convex(self) -> bool:
        """Whether the polygon is a single convex piece."""
        return len(self.pieces) == 1


def _turn_sin(a: Vec, b: Vec, c: Vec) -> float:
    """Sine of the turning angle at ``b`` (positive: left turn)."""
    t1 = _cross(b, _sub(b, a))
    t2 = _cross(b, _sub(c, b))
    return _dot(_cross(t1, t2), b) / (_norm(t1) * _norm(t2))


def _hemisphere_centre(xyz: FloatArray) -> FloatArray | None:
    """A unit vector ``c`` with ``v · c`` > margin for every vertex, or None."""
    centre = np.sum(xyz, axis=0)
    if float(np.linalg.norm(centre)) < 1e-12:
        centre = xyz[0].copy()
    centre = unit(centre)
    for _ in range(2000):
        dots = xyz @ centre
        worst = int(np.argmin(dots))
        if dots[worst] > HEMISPHERE_MARGIN:
            return centre
        # Perceptron step: tilt the centre towards the worst vertex.
        centre = unit(centre + 0.5 * xyz[worst])
    # Steps of a fixed size can swing for ever across a narrow set of centres (vertices up to
    # 80° from a centre, say); the classic perceptron, adding the worst vertex to an
    # unnormalised sum, converges whenever a centre leaves every vertex a margin γ above
    # HEMISPHERE_MARGIN, in about 1 / (γ - HEMISPHERE_MARGIN)² steps.
    total = np.sum(xyz, axis=0)
    for _ in range(_PERCEPTRON_STEPS):
        dots = xyz @ total
        worst = int(np.argmin(dots))
        norm = float(np.linalg.norm(total))
        if norm > 0.0 and dots[worst] > HEMISPHERE_MARGIN * norm:
            return unit(total)
        total = total + xyz[worst]
    return None


def _signed_projected_area(pts: list[Vec], centre: Vec) -> float:
    """Shoelace area of the gnomonic projection about ``centre`` (sign = orientation)."""
    helper = (1.0, 0.0, 0.0) if abs(centre[0]) < 0.9 else (0.0, 1.0, 0.0)
    e1 = _unit(_cross(centre, helper))
    e2 = _cross(centre, e1)
    xs: list[float] = []
    ys: list[float] = []
    for p in pts:
        w = _dot(p, centre)
        xs.append(_dot(p, e1) / w)
        ys.append(_dot(p, e2) / w)
    total = 0.0
    for k in range(len(pts)):
        total += xs[k] * ys[k - len(pts) + 1] - xs[k - len(pts) + 1] * ys[k]
    return 0.5 * total


def _drop_straight_vertices(pts: list[Vec]) -> list[int]:
    """Indexes of the vertices kept once those where the boundary runs straight on are
    removed; reject fold-backs."""
    keep = list(range(len(pts)))
    changed = True
    while changed and len(keep) > 3:
        changed = False
        for k, i in enumerate(keep):
            a, b, c = pts[keep[k - 1]], pts[i], pts[keep[(k + 1) % len(keep)]]
            if abs(_turn_sin(a, b, c)) < STRAIGHT:
                if _dot(_sub(b, a), _sub(c, b)) < 0.0:
                    raise GeometryError(
                        f"polygon edges fold back on each other at vertex {i + 1}",
                        hint="remove the spike from the vertex list",
                    )
                keep.pop(k)
                changed = True
                break
    return keep


def _crossing_candidates(pts: list[Vec], xyz: FloatArray) -> list[tuple[int, int]]:
    """Pairs ``(i, j)`` of non-adjacent edges (edge i joins vertex i to i + 1) that may meet,
    in the order ``i`` then ``j``: all pairs but those where both ends of one edge lie
    clearly on one side of the other's great circle."""
    n = len(pts)
    normals = [_edge_normal(pts[i], pts[(i + 1) % n]) for i in range(n)]
    eps = _SCREEN_EPS
    if n <= _PAIRWISE_LIMIT:
        side = [[_dot(normal, p) for p in pts] for normal in normals]
        out = []
        for i in range(n):
            for j in range(i + 2, n):
                if i == 0 and j == n - 1:
                    continue  # adjacent through the closing edge
                sc, sd = side[i][j], side[i][(j + 1) % n]
                sa, sb = side[j][i], side[j][(i + 1) % n]
                if (sc > eps and sd > eps) or (sc < -eps and sd < -eps):
                    continue
                if (sa > eps and sb > eps) or (sa < -eps and sb < -eps):
                    continue
                out.append((i, j))
        return out
    normal_array = np.array(normals)
    index = np.arange(n)
    pairs: list[tuple[int, int]] = []
    for start in range(0, n, _PAIRWISE_LIMIT):
        rows = index[start : start + _PAIRWISE_LIMIT]
        # s_c[r, j] = n_i · v_j and s_d = n_i · v_(j+1): edge j's ends against edge i's
        # circle; s_a[r, j] = v_i · n_j and s_b = v_(i+1) · n_j: edge i's against edge j's.
        s_c = normal_array[rows] @ xyz.T
        s_d = np.roll(s_c, -1, axis=1)
        s_a = xyz[rows] @ normal_array.T
        s_b = xyz[(rows + 1) % n] @ normal_array.T
        apart = ((s_c > eps) & (s_d > eps)) | ((s_c < -eps) & (s_d < -eps))
        apart |= ((s_a > eps) & (s_b > eps)) | ((s_a < -eps) & (s_b < -eps))
        later = index[None, :] >= rows[:, None] + 2
        closing = (rows[:, None] == 0) & (index[None, :] == n - 1)
        hit_rows, hit_cols = np.nonzero(~apart & later & ~closing)
        pairs.extend(zip(rows[hit_rows].tolist(), hit_cols.tolist(), strict=True))
    return pairs


def _check_simple(pts: list[Vec], xyz: FloatArray) -> None:
    """Reject polygons whose non-adjacent edges meet."""
    n = len(pts)
    for i, j in _crossing_candidates(pts, xyz):
        if arc_crossings(xyz[i], xyz[(i + 1) % n], xyz[j], xyz[(j + 1) % n]):
            raise GeometryError(
                f"polygon edges {i + 1} and {j + 1} intersect",
                hint="list the vertices in order around the boundary, without crossings",
            )


def _triangulate(pts: list[Vec]) -> list[list[int]]:
    """Ear clipping of a simple CCW polygon lying in an open hemisphere."""
    remaining = list(range(len(pts)))
    triangles: list[list[int]] = []
    while len(remaining) > 3:
        m = len(remaining)
        for k in range(m):
            ia, ib, ic = remaining[k - 1], remaining[k], remaining[(k + 1) % m]
            a, b, c = pts[ia], pts[ib], pts[ic]
            turn = _turn_sin(a, b, c)
            if abs(turn) < STRAIGHT:
                remaining.pop(k)  # a straight vertex left by clipping: no area to cut
                break
            if turn < 0.0:
                continue
            # An ear holds no other vertex, boundary included.
            nab, nbc, nca = _edge_normal(a, b), _edge_normal(b, c), _edge_normal(c, a)
            if any(
                _dot(pts[j], nab) >= 0.0 and _dot(pts[j], nbc) >= 0.0 and _dot(pts[j], nca) >= 0.0
                for j in remaining
                if j not in (ia, ib, ic)
            ):
                continue
            triangles.append([ia, ib, ic])
            remaining.pop(k)
            break
        else:  # pragma: no cover - a simple polygon always has an ear
            raise GeometryError("polygon could not be decomposed; is it simple?")
    triangles.append(remaining)
    return triangles


def _merge_convex(pts: list[Vec], pieces: list[list[int]]) -> list[list[int]]:
    """Hertel-Mehlhorn: remove diagonals while the merged piece stays convex."""
    merged = True
    while merged:
        merged = False
        for p_index, piece in enumerate(pieces):
            for k in range(len(piece)):
                u, v = piece[k], piece[(k + 1) % len(piece)]
                for q_index, other in enumerate(pieces):
                    if q_index == p_index or v not in other:
                        continue
                    j = other.index(v)
                    if other[(j + 1) % len(other)] != u:
                        continue
                    # piece: ... u v ...   other: ... v u ...  -> glue along the diagonal u-v.
                    rest_p = piece[k + 1 :] + piece[: k + 1]  # starts at v, ends at u
                    rest_q = other[j + 1 :] + other[: j + 1]  # starts at u, ends at v
                    candidate = rest_p + rest_q[1:-1]
                    if _is_convex(pts, candidate):
                        pieces[p_index] = candidate
                        del pieces[q_index]
                        merged = True
                        break
                if merged:
                    break
            if merged:
                break
    return pieces


def _is_convex(pts: list[Vec], cycle: list[int]) -> bool:
    m = len(cycle)
    return all(
        _turn_sin(pts[cycle[k - 1]], pts[cycle[k]], pts[cycle[(k + 1) % m]]) > -STRAIGHT
        for k in range(m)
    )


def _piece_normals(pts: list[Vec], cycle: tuple[int, ...]) -> FloatArray:
    """Inward unit normals of a convex piece; a diagonal's normal is the exact negation of the
    normal its neighbour piece uses, so no point on a shared diagonal falls between pieces."""
    normals = []
    m = len(cycle)
    for k in range(m):
        u, v = cycle[k], cycle[(k + 1) % m]
        if u < v:
            normals.append(_edge_normal(pts[u], pts[v]))
        else:
            x, y, z = _edge_normal(pts[v], pts[u])
            normals.append((-x, -y, -z))
    return np.array(normals, dtype=np.float64)


def prepare_polygon(xyz: FloatArray) -> PreparedPolygon:
    """Validate, orient and decompose a polygon given as vertex unit vectors.

    Raises
    ------
    GeometryError
        On fewer than three vertices, coincident or antipodal neighbours, fold-backs,
        self-intersections, zero area, or vertices that do not fit in an open hemisphere.
    """
    n = len(xyz)
    if n < 3:
        raise GeometryError(f"a polygon needs at least 3 vertices, got {n}")
    if n > MAX_VERTICES:
        raise GeometryError(f"a polygon may have at most {MAX_VERTICES} vertices, got {n}")
    xyz = np.asarray(xyz, dtype=np.float64)
    pts: list[Vec] = [(x, y, z) for x, y, z in xyz.tolist()]
    for i in range(n):
        angle = _arc_angle(pts[i], pts[(i + 1) % n])
        if angle < MIN_EDGE:
            raise GeometryError(
                f"polygon vertices {i + 1} and {(i + 1) % n + 1} coincide (degenerate edge)",
                hint="remove repeated vertices; do not repeat the first vertex at the end",
            )
        if angle > math.pi - 1e-9:
            raise GeometryError(
                f"polygon vertices {i + 1} and {(i + 1) % n + 1} are antipodal, so the "
                "great-circle edge between them is undefined",
                hint="add an intermediate vertex",
            )
    centre = _hemisphere_centre(xyz)
    if centre is None:
        raise GeometryError(
            "polygon does not fit within a hemisphere",
            hint="split it into smaller polygons combined with OR",
        )
    keep = _drop_straight_vertices(pts)
    xyz = xyz[keep]
    pts = [pts[k] for k in keep]
    _check_simple(pts, xyz)
    cx, cy, cz = centre.tolist()
    area = _signed_projected_area(pts, (cx, cy, cz))
    if area == 0.0:
        raise GeometryError("polygon has zero area")
    if area < 0.0:
        xyz = xyz[::-1].copy()
        pts.reverse()
    cycles = tuple(tuple(p) for p in _merge_convex(pts, _triangulate(pts)))
    return PreparedPolygon(
        xyz=xyz,
        centre=centre,
        pieces=tuple(_piece_normals(pts, c) for c in cycles),
        piece_vertices=cycles,
    )


__all__ = ["PreparedPolygon", "det3", "prepare_polygon"]
