"""The generator behind the 1M-item benchmark: fitted to a catalogue's vectors, it draws vectors of the same shape."""

import numpy as np
import pytest

from fashionrec.retrieval.generated import FittedGenerator, similarity_profile


def clustered(rng: np.random.Generator, count: int, dim: int = 32) -> np.ndarray:
    """Three unequal groups, each spread mostly along two directions of its own."""
    centres = rng.standard_normal((3, dim)) * 3
    axes = 0.5 * rng.standard_normal((3, 2, dim))
    group = rng.choice(3, size=count, p=[0.6, 0.3, 0.1])
    points = centres[group] + np.einsum("nk,nkd->nd", rng.standard_normal((count, 2)), axes[group])
    points += 0.05 * rng.standard_normal((count, dim))
    return (points / np.linalg.norm(points, axis=1, keepdims=True)).astype(np.float32)


def test_generated_vectors_keep_the_regions_their_shares_and_their_spread() -> None:
    real = clustered(np.random.default_rng(0), 3000)
    generator = FittedGenerator.fit(real, regions=3, directions=4)
    assert generator.weights.sum() == pytest.approx(1.0) and len(generator.centres) == 3
    generated = generator.sample(3000, seed=1, chunk=700)  # several chunks
    assert generated.shape == real.shape and generated.dtype == np.float32
    assert np.allclose(np.linalg.norm(generated, axis=1), 1.0, atol=1e-5)
    nearest_centre = np.argmax(generated @ generator.centres.T, axis=1)
    shares = np.bincount(nearest_centre, minlength=3) / len(generated)
    assert np.allclose(np.sort(shares), np.sort(generator.weights), atol=0.03)
    real_profile, generated_profile = (
        similarity_profile(real[300:], real[:300]),
        similarity_profile(generated[300:], generated[:300]),
    )
    for key, value in real_profile.items():
        assert abs(generated_profile[key] - value) < 0.02, (key, value, generated_profile[key])
    assert not np.array_equal(generator.sample(10, seed=2), generator.sample(10, seed=3))  # seeded, not fixed
