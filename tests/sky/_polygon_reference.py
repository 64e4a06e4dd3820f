"""The polygon preparation as it was before session 3 (numpy 3-vectors, ``np.cross``): the
reference the faster ``skyvault.sky._polygon`` is compared with.  Self-contained, so that
later changes to ``skyvault.sky._vector`` cannot move the yardstick."""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from skyvault.errors import GeometryError

FloatArray = np.ndarray
ON_CIRCLE_EPS = 4e-16 * 1024


def unit(vec: FloatArray) -> FloatArray:
    return vec / np.linalg.norm(vec)


def edge_normal(a: FloatArray, b: FloatArray) -> FloatArray:
    return unit(np.cross(a + b, b - a))


def arc_angle(a: FloatArray, b: FloatArray) -> float:
    return math.atan2(float(np.linalg.norm(np.cross(a, b))), float(np.dot(a, b)))


def on_arc(x: FloatArray, a: FloatArray, b: FloatArray, eps: float = ON_CIRCLE_EPS) -> bool:
    n = edge_normal(a, b)
    return float(np.dot(np.cross(a, x), n)) >= -eps and float(np.dot(np.cross(x, b), n)) >= -eps


def arc_crossings(a: FloatArray, b: FloatArray, c: FloatArray, d: FloatArray) -> list[FloatArray]:
    n1 = edge_normal(a, b)
    n2 = edge_normal(c, d)
    sc, sd = float(np.dot(n1, c)), float(np.dot(n1, d))
    sa, sb = float(np.dot(n2, a)), float(np.dot(n2, b))
    eps = ON_CIRCLE_EPS
    if (sc > eps and sd > eps) or (sc < -eps and sd < -eps):
        return []
    if (sa > eps and sb > eps) or (sa < -eps and sb < -eps):
        return []
    axis = np.cross(n1, n2)
    norm = float(np.linalg.norm(axis))
    if norm < eps:
        found = [p for p in (c, d) if on_arc(p, a, b)]
        found += [p for p in (a, b) if on_arc(p, c, d)]
        return found
    x = axis / norm
    for candidate in (x, -x):
        if on_arc(candidate, a, b) and on_arc(candidate, c, d):
            return [candidate]
    return []


#: Edges shorter than this (radians, about 0.2 µas) are taken as coincident vertices.
MIN_EDGE = 1e-12
#: |sin(turning angle)| below this marks a vertex where the boundary runs straight on.
STRAIGHT = 1e-12
#: Vertices must lie this far (dot product) inside the open hemisphere that holds them.
HEMISPHERE_MARGIN = 1e-9
MAX_VERTICES = 2000


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


def _turn_sin(a: FloatArray, b: FloatArray, c: FloatArray) -> float:
    """Sine of the turning angle at ``b`` (positive: left turn)."""
    t1 = np.cross(b, b - a)
    t2 = np.cross(b, c - b)
    n1 = float(np.linalg.norm(t1))
    n2 = float(np.linalg.norm(t2))
    return float(np.dot(np.cross(t1, t2), b)) / (n1 * n2)


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
    return None


def _signed_projected_area(xyz: FloatArray, centre: FloatArray) -> float:
    """Shoelace area of the gnomonic projection about ``centre`` (sign = orientation)."""
    helper = np.array([1.0, 0.0, 0.0]) if abs(centre[0]) < 0.9 else np.array([0.0, 1.0, 0.0])
    e1 = unit(np.cross(centre, helper))
    e2 = np.cross(centre, e1)
    proj = xyz / (xyz @ centre)[:, None]
    x = proj @ e1
    y = proj @ e2
    return 0.5 * float(np.sum(x * np.roll(y, -1) - np.roll(x, -1) * y))


def _drop_straight_vertices(xyz: FloatArray) -> FloatArray:
    """Remove vertices where the boundary runs straight on; reject fold-backs."""
    keep = list(range(len(xyz)))
    changed = True
    while changed and len(keep) > 3:
        changed = False
        for k, i in enumerate(keep):
            a, b, c = xyz[keep[k - 1]], xyz[i], xyz[keep[(k + 1) % len(keep)]]
            if abs(_turn_sin(a, b, c)) < STRAIGHT:
                if float(np.dot(b - a, c - b)) < 0.0:
                    raise GeometryError(
                        f"polygon edges fold back on each other at vertex {i + 1}",
                        hint="remove the spike from the vertex list",
                    )
                keep.pop(k)
                changed = True
                break
    return xyz[keep]


def _check_simple(xyz: FloatArray) -> None:
    """Reject polygons whose non-adjacent edges meet."""
    n = len(xyz)
    for i in range(n):
        a, b = xyz[i], xyz[(i + 1) % n]
        for j in range(i + 2, n):
            if i == 0 and j == n - 1:
                continue  # adjacent through the closing edge
            c, d = xyz[j], xyz[(j + 1) % n]
            if arc_crossings(a, b, c, d):
                raise GeometryError(
                    f"polygon edges {i + 1} and {j + 1} intersect",
                    hint="list the vertices in order around the boundary, without crossings",
                )


def _in_closed_triangle(p: FloatArray, a: FloatArray, b: FloatArray, c: FloatArray) -> bool:
    return bool(
        np.dot(p, edge_normal(a, b)) >= 0.0
        and np.dot(p, edge_normal(b, c)) >= 0.0
        and np.dot(p, edge_normal(c, a)) >= 0.0
    )


def _triangulate(xyz: FloatArray) -> list[list[int]]:
    """Ear clipping of a simple CCW polygon lying in an open hemisphere."""
    remaining = list(range(len(xyz)))
    triangles: list[list[int]] = []
    while len(remaining) > 3:
        m = len(remaining)
        for k in range(m):
            ia, ib, ic = remaining[k - 1], remaining[k], remaining[(k + 1) % m]
            a, b, c = xyz[ia], xyz[ib], xyz[ic]
            turn = _turn_sin(a, b, c)
            if abs(turn) < STRAIGHT:
                remaining.pop(k)  # a straight vertex left by clipping: no area to cut
                break
            if turn < 0.0:
                continue
            others = (j for j in remaining if j not in (ia, ib, ic))
            if any(_in_closed_triangle(xyz[j], a, b, c) for j in others):
                continue
            triangles.append([ia, ib, ic])
            remaining.pop(k)
            break
        else:  # pragma: no cover - a simple polygon always has an ear
            raise GeometryError("polygon could not be decomposed; is it simple?")
    triangles.append(remaining)
    return triangles


def _merge_convex(xyz: FloatArray, pieces: list[list[int]]) -> list[list[int]]:
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
                    if _is_convex(xyz, candidate):
                        pieces[p_index] = candidate
                        del pieces[q_index]
                        merged = True
                        break
                if merged:
                    break
            if merged:
                break
    return pieces


def _is_convex(xyz: FloatArray, cycle: list[int]) -> bool:
    m = len(cycle)
    return all(
        _turn_sin(xyz[cycle[k - 1]], xyz[cycle[k]], xyz[cycle[(k + 1) % m]]) > -STRAIGHT
        for k in range(m)
    )


def _piece_normals(xyz: FloatArray, cycle: tuple[int, ...]) -> FloatArray:
    """Inward unit normals of a convex piece; a diagonal's normal is the exact negation of the
    normal its neighbour piece uses, so no point on a shared diagonal falls between pieces."""
    normals = []
    m = len(cycle)
    for k in range(m):
        u, v = cycle[k], cycle[(k + 1) % m]
        if u < v:
            normals.append(edge_normal(xyz[u], xyz[v]))
        else:
            normals.append(-edge_normal(xyz[v], xyz[u]))
    return np.array(normals)


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
    for i in range(n):
        angle = arc_angle(xyz[i], xyz[(i + 1) % n])
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
    xyz = _drop_straight_vertices(xyz)
    _check_simple(xyz)
    area = _signed_projected_area(xyz, centre)
    if area == 0.0:
        raise GeometryError("polygon has zero area")
    if area < 0.0:
        xyz = xyz[::-1].copy()
    pieces = _merge_convex(xyz, _triangulate(xyz))
    cycles = tuple(tuple(p) for p in pieces)
    return PreparedPolygon(
        xyz=xyz,
        centre=centre,
        pieces=tuple(_piece_normals(xyz, c) for c in cycles),
        piece_vertices=cycles,
    )
