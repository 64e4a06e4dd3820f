"""Spherical geometry and HEALPix coverage: regions to partitions and index ranges.

* :mod:`skyvault.sky.regions`: immutable ``Point``, ``Circle``, ``Polygon``, ``Box`` (ADQL 2.1
  semantics) and ``RaDecRange``, with DALI serialisation.
* :mod:`skyvault.sky.geometry`: exact spherical predicates and measures in numpy
  (``angular_distance``, ``contains_points``, ``intersects``, ``contains``, ``area``,
  ``centroid``, ``dec_range``).
* :mod:`skyvault.sky.sql`: the same predicates as DuckDB SQL expressions.
* :mod:`skyvault.sky.coverage`: ``healpix29`` (the ``_healpix_29`` column), conservative
  HEALPix coverage of regions, order-29 index ranges and HATS partition pruning.
"""
