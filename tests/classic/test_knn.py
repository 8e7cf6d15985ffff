"""k-NN: against a brute-force reference and scikit-learn, tie-breaks, chunking, top-k, the pixel paths, bad input."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from imgcls.classic import KNeighborsClassifier, knn, pixel_grid
from imgcls.errors import ConfigError, DataError


def brute_force(train: np.ndarray, query: np.ndarray, k: int, metric: str) -> tuple[np.ndarray, np.ndarray]:
    """All distances in float64, then a stable sort: equal distances keep the training order."""
    b = train.astype(np.float64)
    rows = []
    for a in np.array_split(query.astype(np.float64), max(1, len(query) // 50)):  # bounded temporaries
        if metric == "l2":
            rows.append(np.sqrt(((a[:, None] - b[None]) ** 2).sum(-1)))
        elif metric == "l1":
            rows.append(np.abs(a[:, None] - b[None]).sum(-1))
        else:
            rows.append(
                1 - (a @ b.T) / (np.linalg.norm(a, axis=1)[:, None] * np.linalg.norm(b, axis=1)[None])
            )
    d = np.concatenate(rows)
    idx = np.argsort(d, axis=1, kind="stable")[:, :k]
    return np.take_along_axis(d, idx, 1), idx


def _data(kind: str, n: int, q: int, d: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    if kind == "pixels":  # few distinct values: many exactly equal distances
        return (rng.integers(0, 4, (n, d)) * 60).astype(np.uint8), (rng.integers(0, 4, (q, d)) * 60).astype(
            np.uint8
        )
    return rng.normal(size=(n, d)), rng.normal(size=(q, d))


@pytest.mark.parametrize("metric", ["l2", "l1", "cosine"])
@pytest.mark.parametrize("kind", ["float", "pixels"])
def test_neighbours_match_brute_force(metric: str, kind: str) -> None:
    train, query = _data(kind, 700, 40, 24, seed=1)
    if metric == "cosine" and kind == "pixels":
        train[:, 0] = query[:, 0] = 60  # no all-zero vector
    clf = KNeighborsClassifier(k=7, metric=metric).fit(train, np.zeros(len(train), dtype=int))
    dist, idx = clf.kneighbors(query)
    ref_d, ref_i = brute_force(train, query, 7, metric)
    np.testing.assert_array_equal(idx.numpy(), ref_i)
    np.testing.assert_allclose(dist.numpy(), ref_d, rtol=1e-9, atol=1e-9)
    pixels = (
        "int8" if knn.fast_int8() else "pixels"
    )  # the product the dispatch chose (tests/test_hardware.py)
    assert clf.stats.kind.startswith(pixels if kind == "pixels" and metric != "cosine" else "float")


@pytest.mark.parametrize("metric", ["l2", "l1", "cosine"])
@pytest.mark.parametrize("kind", ["float", "pixels"])
def test_projection_windows_keep_the_search_exact(
    metric: str, kind: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    # superblocks of 512 (not 1,024 or 2,048) samples: 12 of them, products skipped outside the queries' windows
    monkeypatch.setattr(knn, "_SUPERBLOCK", {"int8": 512, "float32": 512})
    rng = np.random.default_rng(5)
    centres = rng.normal(size=(6, 8)) * 3
    train = centres[rng.integers(0, 6, 6000)] + rng.normal(size=(6000, 8))
    query = centres[rng.integers(0, 6, 300)] + rng.normal(size=(300, 8))
    if kind == "pixels":
        train, query = (np.clip(a * 12 + 128, 0, 255).astype(np.uint8) for a in (train, query))
        train[5000:5100] = train[:100]  # exact duplicates: ties
    clf = KNeighborsClassifier(k=5, metric=metric).fit(train, np.zeros(len(train), dtype=int))
    dist, idx = clf.kneighbors(query)
    ref_d, ref_i = brute_force(train, query, 5, metric)
    np.testing.assert_array_equal(idx.numpy(), ref_i)
    np.testing.assert_allclose(dist.numpy(), ref_d, rtol=1e-9, atol=1e-9)
    assert clf.stats.product_share < 1.0  # some products were skipped


def _clustered_pixels(n: int, q: int, d: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """uint8 images around 8 patterns (Fashion-MNIST-like structure), with exact duplicates: ties."""
    rng = np.random.default_rng(seed)
    centres = rng.integers(40, 216, (8, d))
    train = centres[rng.integers(0, 8, n)] + rng.normal(scale=25, size=(n, d))
    query = centres[rng.integers(0, 8, q)] + rng.normal(scale=25, size=(q, d))
    train, query = (np.clip(a, 0, 255).astype(np.uint8) for a in (train, query))
    train[n - 50 :] = train[:50]
    return train, query


def test_screen_bound_never_exceeds_the_distance(monkeypatch: pytest.MonkeyPatch) -> None:
    # |z(a) - z(b)|^2, from the float32 z less the rounding margin, is at most |a - b|^2 for every pair
    monkeypatch.setattr(knn, "_SUPERBLOCK", {"int8": 512, "float32": 512})
    train, query = _clustered_pixels(2000, 60, 200, seed=6)
    space = knn._PixelSpace(torch.from_numpy(train), "l2", 1.0)
    assert space.screen_z is not None and space.screen_z.shape[1] == knn._SCREEN_DIMS + 1
    qp = space.prepare(torch.from_numpy(query))
    real = space.order < space.n
    z_b = space.screen_z[real].double()
    b = train[space.order[real].numpy()].astype(np.float64)
    reduced = ((qp.z.double()[:, None] - z_b[None]) ** 2).sum(-1).numpy()
    exact = ((query.astype(np.float64)[:, None] - b[None]) ** 2).sum(-1)
    assert (reduced - qp.zdelta.numpy()[:, None] <= exact).all()
    # and it is a useful bound: most of the distance, on average
    assert np.median(reduced / np.maximum(exact, 1)) > 0.5


def test_screen_directions_are_principal_orthonormal_and_deterministic() -> None:
    rng = np.random.default_rng(8)
    # variance along 3 known orthonormal directions, far above the noise
    axes = np.linalg.qr(rng.normal(size=(300, 3)))[0]
    x = 128 + rng.normal(size=(3000, 3)) * [30, 20, 10] @ axes.T + rng.normal(size=(3000, 300))
    x = torch.from_numpy(np.clip(x, 0, 255).astype(np.uint8))
    state = torch.get_rng_state()
    mu, basis = knn._principal_basis(x, 16)
    assert torch.equal(torch.get_rng_state(), state)  # the global generator is left alone
    assert torch.equal(basis, knn._principal_basis(x, 16)[1])
    assert torch.allclose(basis.T @ basis, torch.eye(16, dtype=torch.float64), atol=1e-12)
    # the first three span the known directions
    overlap = np.linalg.svd(axes.T @ basis[:, :3].numpy(), compute_uv=False)
    assert overlap.min() > 0.99
    assert torch.allclose(mu, x[:2048].double().mean(0))  # 3,000 rows: the first 2,048


@pytest.mark.parametrize("images", ["rank 3", "3 pixels"])
def test_screen_keeps_every_cell_with_a_sample_within_u(images: str, monkeypatch: pytest.MonkeyPatch) -> None:
    # The screen's contract, at its edge: u is set to exactly the distance of one cell's nearest sample, on
    # images where the screen's bound is close to the distance (nearly rank-3 images: within the rounding to
    # integers; images where 3 pixels vary: within float rounding, which the margin must cover), so a screen
    # tighter than the bound drops that cell.
    monkeypatch.setattr(knn, "_SUPERBLOCK", {"int8": 256, "float32": 256})
    rng = np.random.default_rng(9)
    if images == "rank 3":
        images = np.clip(
            np.rint(128 + rng.uniform(-1, 1, (3050, 3)) @ rng.normal(size=(3, 200)) * 30), 0, 255
        )
    else:
        images = np.full((3050, 200), 100)
        images[:, [5, 50, 150]] = rng.integers(0, 256, (3050, 3))
    images = images.astype(np.uint8)
    train, query = images[:3000], images[3000:]
    space = knn._PixelSpace(torch.from_numpy(train), "l2", 1.0)
    qp = space.prepare(torch.from_numpy(query))
    cells = space.sb_count
    d2 = ((query[:, None].astype(np.float64) - train[None].astype(np.float64)) ** 2).sum(-1)
    cell_of = np.empty(len(train), dtype=int)
    real = (space.order < space.n).numpy()
    cell_of[space.order.numpy()[real]] = np.arange(len(space.order))[real] // (len(space.order) // cells)
    nearest = np.stack([d2[:, cell_of == c].min(1) for c in range(cells)], 1)  # (queries, cells)
    gap = space.box_gap(space.projection(torch.from_numpy(query)))  # (queries, cells), the cells' windows
    for pick in range(cells):
        u = torch.from_numpy(nearest[:, pick].copy())
        within = torch.from_numpy(nearest <= nearest[:, pick : pick + 1])
        need = torch.ones(len(query), cells, dtype=torch.bool)
        space.screen(qp, need, torch.arange(cells), u)
        assert need[within].all()
        assert (gap <= space.window(u)[:, None])[within].all()  # no window leaves such a cell out either
    need = torch.ones(len(query), cells, dtype=torch.bool)
    space.screen(qp, need, torch.arange(cells), torch.from_numpy(nearest.min(1)))
    assert not need.all()  # and it does drop cells


@pytest.mark.parametrize("int8", [True, False])
@pytest.mark.parametrize("n, d", [(5000, 200), (2500, 1100)])  # 1,100 pixels: float64 products (> 2^24)
def test_screen_keeps_the_search_exact(int8: bool, n: int, d: int, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(knn, "_SUPERBLOCK", {"int8": 512, "float32": 512})
    monkeypatch.setattr(knn, "fast_int8", lambda: int8)  # both product paths, whatever this CPU has
    train, query = _clustered_pixels(n, 300, d, seed=7)
    clf = KNeighborsClassifier(k=5).fit(train, np.zeros(len(train), dtype=int))
    dist, idx = clf.kneighbors(query)
    ref_d, ref_i = brute_force(train, query, 5, "l2")
    np.testing.assert_array_equal(idx.numpy(), ref_i)
    np.testing.assert_allclose(dist.numpy(), ref_d, rtol=1e-9, atol=1e-9)
    assert clf.stats.kind == f"{'int8' if int8 else 'pixels'}-l2"
    assert clf.stats.screened_share > 0  # the screen dropped cells the windows kept
    # without the screen (too few features for it; the cells then come from int8 directions): the same answer
    monkeypatch.setattr(knn, "_SCREEN_DIMS", d)
    plain = KNeighborsClassifier(k=5).fit(train, np.zeros(len(train), dtype=int))
    d2, i2 = plain.kneighbors(query)
    assert torch.equal(idx, i2) and torch.equal(dist, d2)
    assert plain.stats.screened_share == 0


@pytest.mark.parametrize("seed", range(8))
def test_screen_exact_on_odd_data(seed: int, monkeypatch: pytest.MonkeyPatch) -> None:
    # small cells and a 4-direction screen, so that it acts on small data: random, few-valued, nearly constant
    # and clustered pixels, queries drawn from the training set (distance 0) or not, k from 1 to 8
    monkeypatch.setattr(knn, "_SUPERBLOCK", {"int8": 256, "float32": 256})
    monkeypatch.setattr(knn, "_SCREEN_DIMS", 4)
    rng = np.random.default_rng(seed)
    n, q, d, k = int(rng.integers(300, 1500)), int(rng.integers(1, 80)), int(rng.integers(9, 60)), seed + 1
    train = [
        lambda: rng.integers(0, 256, (n, d)),
        lambda: rng.integers(0, 3, (n, d)) * 120,
        lambda: np.full((n, d), 7) + (rng.random((n, d)) < 0.01) * 200,
        lambda: np.clip(
            rng.integers(0, 256, (5, d))[rng.integers(0, 5, n)] + rng.normal(0, 10, (n, d)), 0, 255
        ),
    ][seed % 4]().astype(np.uint8)
    query = train[rng.integers(0, n, q)] if seed % 3 == 0 else rng.integers(0, 256, (q, d)).astype(np.uint8)
    ref_d, ref_i = brute_force(train, query, k, "l2")
    for int8 in (True, False):
        monkeypatch.setattr(knn, "fast_int8", lambda v=int8: v)
        clf = KNeighborsClassifier(k=k).fit(train, np.zeros(n, dtype=int))
        dist, idx = clf.kneighbors(query)
        assert clf._spaces["pixels"].screen_z is not None
        np.testing.assert_array_equal(idx.numpy(), ref_i)
        np.testing.assert_allclose(dist.numpy(), ref_d, rtol=1e-9, atol=1e-9)


@pytest.mark.parametrize("metric", ["l2", "l1", "cosine"])
@pytest.mark.parametrize("weights", ["uniform", "distance"])
def test_predictions_match_scikit_learn(metric: str, weights: str) -> None:
    from sklearn.neighbors import KNeighborsClassifier as SkKNN

    rng = np.random.default_rng(2)
    centres = rng.normal(size=(4, 10)) * 1.5
    y = rng.integers(0, 4, 400)
    x = centres[y] + rng.normal(size=(400, 10))
    xq = centres[rng.integers(0, 4, 120)] + rng.normal(size=(120, 10))
    sk_metric = {"l2": "euclidean", "l1": "manhattan", "cosine": "cosine"}[metric]
    sk = SkKNN(n_neighbors=6, metric=sk_metric, weights=weights, algorithm="brute").fit(x, y)
    ours = KNeighborsClassifier(k=6, metric=metric, weights=weights, tie_break="label").fit(x, y)
    np.testing.assert_array_equal(ours.predict(xq).numpy(), sk.predict(xq))
    np.testing.assert_allclose(ours.predict_proba(xq).numpy(), sk.predict_proba(xq), rtol=1e-9, atol=1e-12)


def test_vote_tie_goes_to_the_class_with_the_nearest_member() -> None:
    # on a line from the query at 0: class 1 at 1 and 4, class 0 at 2 and 3: two votes each
    x = np.array([[1.0], [2.0], [3.0], [4.0]])
    y = np.array([1, 0, 0, 1])
    q = np.array([[0.0]])
    assert KNeighborsClassifier(k=4).fit(x, y).predict(q).tolist() == [1]  # class 1 has the nearest member
    assert KNeighborsClassifier(k=4, tie_break="label").fit(x, y).predict(q).tolist() == [0]  # smallest label


def test_equal_distances_are_ordered_by_training_index() -> None:
    x = np.array([[5.0, 5.0], [1.0, 0.0], [0.0, 1.0], [-1.0, 0.0], [0.0, -1.0]])
    y = np.array([0, 3, 2, 1, 2])
    clf = KNeighborsClassifier(k=3).fit(x, y)
    dist, idx = clf.kneighbors(np.zeros((1, 2)))
    assert idx.tolist() == [[1, 2, 3]] and dist.tolist() == [[1.0, 1.0, 1.0]]
    # three classes tie with one vote: the first neighbour (index 1, class 3) decides, again and again
    assert {int(clf.predict(np.zeros((1, 2)))[0]) for _ in range(3)} == {3}


def test_chunks_give_the_same_answer_as_one_chunk() -> None:
    train, query = _data("pixels", 3000, 200, 64, seed=3)
    y = np.arange(3000) % 5
    big = KNeighborsClassifier(k=5, metric="l1").fit(train, y)
    tiny = KNeighborsClassifier(k=5, metric="l1", memory_budget_mb=0.05).fit(train, y)
    d1, i1 = big.kneighbors(query)
    threads = torch.get_num_threads()
    torch.set_num_threads(2)  # chunks then run in a pool of threads
    try:
        d2, i2 = tiny.kneighbors(query)
    finally:
        torch.set_num_threads(threads)
    assert torch.get_num_threads() == threads
    assert tiny.stats.chunks > big.stats.chunks >= 1
    assert torch.equal(i1, i2) and torch.equal(d1, d2)
    assert torch.equal(big.predict_topk(query, 3), tiny.predict_topk(query, 3))


def test_memory_budget_below_one_row_is_refused() -> None:
    clf = KNeighborsClassifier(k=1, memory_budget_mb=0.001).fit(
        np.zeros((5000, 3)), np.zeros(5000, dtype=int)
    )
    with pytest.raises(ConfigError, match="memory_budget_mb"):
        clf.kneighbors(np.zeros((1, 3)))


def test_topk_ranks_by_votes_then_nearest_member_then_label() -> None:
    # neighbours of 0 in order: classes 2, 2, 1, 3, 2 -> votes 2:3, 1:1, 3:1 (1 is nearer), then 0, 4 unvoted
    x = np.arange(1.0, 6.0)[:, None]
    y = np.array([2, 2, 1, 3, 2])
    clf = KNeighborsClassifier(k=5).fit(x, y, num_classes=5)
    assert clf.predict_topk(np.zeros((1, 1)), 5).tolist() == [[2, 1, 3, 0, 4]]
    assert clf.predict(np.zeros((1, 1))).tolist() == [2]
    np.testing.assert_allclose(clf.predict_proba(np.zeros((1, 1))).numpy(), [[0, 0.2, 0.6, 0.2, 0]])


def test_distance_weights_let_an_exact_match_decide() -> None:
    x = np.array([[0.0], [0.1], [0.2], [5.0]])
    y = np.array([1, 0, 0, 1])
    clf = KNeighborsClassifier(k=4, weights="distance").fit(x, y)
    assert clf.predict(np.array([[5.0]])).tolist() == [1]
    np.testing.assert_allclose(clf.predict_proba(np.array([[5.0]])).numpy(), [[0.0, 1.0]])


def test_pixels_as_uint8_and_as_floats_on_the_255_grid_agree() -> None:
    train, query = _data("pixels", 500, 30, 16, seed=4)
    y = np.arange(500) % 3
    for metric, scale in (("l2", 255.0), ("l1", 255.0)):
        a = KNeighborsClassifier(k=4, metric=metric).fit(train, y)
        b = KNeighborsClassifier(k=4, metric=metric).fit(torch.from_numpy(train).float() / 255, y)
        da, ia = a.kneighbors(query)
        db, ib = b.kneighbors(torch.from_numpy(query).float() / 255)
        assert a.stats.kind == b.stats.kind == f"{'int8' if knn.fast_int8() else 'pixels'}-{metric}"
        assert torch.equal(ia, ib)
        torch.testing.assert_close(da / scale, db)


def test_pixel_grid_detection() -> None:
    u8 = torch.tensor([[0, 17, 255]], dtype=torch.uint8)
    assert pixel_grid(u8)[1] == 1.0
    grid, scale = pixel_grid(u8.float() / 255)
    assert scale == 255.0 and torch.equal(grid, u8)
    assert pixel_grid(torch.tensor([[0.5, 0.25]])) is None  # not on the 1/255 grid
    assert pixel_grid(torch.tensor([[300, 2]])) is None  # integers beyond a byte


def test_a_class_without_training_samples_is_fine() -> None:
    clf = KNeighborsClassifier(k=1).fit(np.array([[0.0], [1.0]]), np.array([0, 2]), num_classes=4)
    assert clf.predict_proba(np.array([[0.9]])).tolist() == [[0.0, 0.0, 1.0, 0.0]]


def test_bad_input_gives_one_clear_error() -> None:
    x, y = np.random.default_rng(0).normal(size=(10, 3)), np.arange(10) % 2
    clf = KNeighborsClassifier(k=3).fit(x, y)
    with pytest.raises(DataError, match="queries have 4 features but the training data has 3"):
        clf.predict(np.zeros((2, 4)))
    with pytest.raises(ConfigError, match="larger than the training set"):
        KNeighborsClassifier(k=11).fit(x, y)
    with pytest.raises(ConfigError, match="k must be a positive integer"):
        KNeighborsClassifier(k=0)
    with pytest.raises(ConfigError, match="unknown metric"):
        KNeighborsClassifier(metric="l3")
    bad = x.copy()
    bad[4, 1] = np.nan
    with pytest.raises(DataError, match="NaN .* row 4"):
        KNeighborsClassifier(k=3).fit(bad, y)
    with pytest.raises(DataError, match="NaN"):
        clf.predict(bad)
    with pytest.raises(DataError, match="one per sample"):
        KNeighborsClassifier(k=3).fit(x, y[:-1])
    with pytest.raises(DataError, match="all zeros"):
        KNeighborsClassifier(k=1, metric="cosine").fit(np.zeros((3, 2)), [0, 1, 0]).predict(np.ones((1, 2)))
    with pytest.raises(ConfigError, match="not fitted"):
        KNeighborsClassifier().predict(x)
