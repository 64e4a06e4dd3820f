"""The 3-vector primitives' fast paths give numpy's bits."""

from __future__ import annotations

import numpy as np

from skyvault.sky._vector import cross


def test_cross_gives_the_bits_of_numpy_cross() -> None:
    rng = np.random.default_rng(0)
    vectors = np.concatenate(
        [
            rng.normal(size=(5000, 3)),
            rng.normal(size=(5000, 3)) * 1e-9 + np.array([0.0, 0.0, 1.0]),
            np.array([[0.0, 0.0, 0.0], [1.0, 0.0, 0.0], [-0.0, 1.0, -0.0], [np.inf, 1.0, 0.0]]),
        ]
    )
    others = rng.permutation(vectors)
    with np.errstate(invalid="ignore"):
        for a, b in zip(vectors, others, strict=True):
            got = cross(a, b)
            expected = np.cross(a, b)
            assert got.dtype == expected.dtype
            assert got.shape == (3,)
            np.testing.assert_array_equal(got, expected)
            assert np.array_equal(np.signbit(got), np.signbit(expected))


def test_cross_falls_back_to_numpy_for_other_shapes_and_types() -> None:
    a = np.arange(12.0).reshape(4, 3)
    b = np.ones((4, 3))
    np.testing.assert_array_equal(cross(a, b), np.cross(a, b))
    ints = np.array([1, 2, 3])
    assert cross(ints, np.array([4, 5, 6])).dtype == np.cross(ints, np.array([4, 5, 6])).dtype
    f32 = np.array([0.1, 0.2, 0.3], dtype=np.float32)
    np.testing.assert_array_equal(cross(f32, f32[::-1]), np.cross(f32, f32[::-1]))
