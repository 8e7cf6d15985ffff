"""imgcls.classic against scikit-learn on the real Fashion-MNIST, both measured in the same run.

Rows: k-NN (k=5, uniform votes) with L2 (60,000 train x 10,000 test) and with L1 (``--l1-train`` x
``--l1-test``, 20,000 x 2,000 by default: scikit-learn's L1 on the whole set takes minutes), Gaussian naive
Bayes, and optionally the linear softmax classifier against ``LogisticRegression`` (``--linear``). Both
libraries get the same float32 pixels in [0, 1] (784 features); imgcls recognises them as 8-bit pixels (the
1/255 grid), the conversion being part of its time. Every timing is fit + predict of a fresh classifier,
repeated ``--repeats`` times (scikit-learn's L1 k-NN ``--sk-l1-repeats`` times); the table gives mean ± std
(min-max, n). Each k-NN row also times the simplest alternative, a plain torch brute force (a float32
``|q|^2 + |x|^2 - 2 q x^T`` or ``torch.cdist(p=1)`` over chunks of queries, then ``topk``), so the design of
imgcls's search is always measured against it.

Agreement: the fraction of test images where both predict the same class. Where they differ, a tie is the
expected reason, and the table counts them: a *distance tie* (the k-th and (k+1)-th neighbours at exactly the
same distance, so which one votes is a matter of order: imgcls takes the lower training index, scikit-learn
whatever its floating-point rounding gives) or a *vote tie* (two classes with the top vote count: imgcls
gives it to the class with the nearest member, scikit-learn to the smallest label). "unexplained" counts
disagreements at images with neither tie (0 is what exactness means).

Both use all cores (torch threads = cores, scikit-learn ``n_jobs=-1``). OpenMP threads wait passively
(``OMP_WAIT_POLICY=PASSIVE``, set here for both libraries unless already set): on a shared machine, spinning
threads that lose their core stall every parallel region.

    python benchmarks/classic_vs_sklearn.py                 # writes benchmarks/results/classic_vs_sklearn.md
    python benchmarks/classic_vs_sklearn.py --repeats 1 --sk-l1-repeats 0   # quick look, no sklearn L1
    python benchmarks/classic_vs_sklearn.py --int8 off      # the float32 products an AVX2 CPU takes, timed here
"""

from __future__ import annotations

import os

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

import argparse  # noqa: E402
import statistics  # noqa: E402
import sys  # noqa: E402
import time  # noqa: E402
from collections.abc import Callable  # noqa: E402
from datetime import datetime  # noqa: E402
from pathlib import Path  # noqa: E402

import numpy as np  # noqa: E402
import torch  # noqa: E402

sys.path.insert(0, str(Path(__file__).parent))
from _common import spread  # noqa: E402

from imgcls.classic import GaussianNB, KNeighborsClassifier  # noqa: E402
from imgcls.data import load_dataset  # noqa: E402
from imgcls.utils.hardware import describe, machine_report  # noqa: E402

# Xiao et al. 2017 (arXiv:1708.07747), Table 3: test accuracy of the scikit-learn baselines on Fashion-MNIST.
PAPER = {"knn": "0.85-0.86", "nb": "0.511", "linear": "0.842"}


def timed(fn: Callable[[], np.ndarray], repeats: int) -> tuple[list[float], np.ndarray | None]:
    times, out = [], None
    for _ in range(repeats):
        t = time.perf_counter()
        out = fn()
        times.append(time.perf_counter() - t)
    return times, out


def brute_force(
    x_train: torch.Tensor, y_train: torch.Tensor, x_test: torch.Tensor, metric: str, k: int
) -> np.ndarray:
    """The plain torch k-NN: distances of chunks of 256 queries to everything, ``topk``, majority vote."""
    sq = x_train.square().sum(1)
    preds = []
    for q in x_test.split(256):
        if metric == "l2":
            d = torch.addmm(sq, q, x_train.T, alpha=-2)  # + |q|^2 does not change the order
        else:
            d = torch.cdist(q, x_train, p=1)
        idx = d.topk(k, dim=1, largest=False).indices
        votes = torch.zeros(len(q), 10).scatter_add_(1, y_train[idx], torch.ones(len(q), k))
        preds.append(votes.argmax(1))
    return torch.cat(preds).numpy()


def knn_ties(
    x_train: torch.Tensor, y_train: torch.Tensor, x_test: torch.Tensor, metric: str, k: int
) -> tuple:
    """Per test image: a distance tie at the k-th neighbour, a vote tie among the top classes."""
    clf = KNeighborsClassifier(k=k + 1, metric=metric).fit(x_train, y_train)
    dist, idx = clf.kneighbors(x_test)
    dist_tie = (dist[:, k - 1] == dist[:, k]).numpy()
    votes = torch.zeros(len(x_test), 10, dtype=torch.int64).scatter_add_(
        1, y_train[idx[:, :k]], torch.ones(len(x_test), k, dtype=torch.int64)
    )
    top = votes.max(1, keepdim=True).values
    vote_tie = ((votes == top).sum(1) > 1).numpy()
    return dist_tie, vote_tie


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--sk-l1-repeats", type=int, default=1, help="scikit-learn's L1 k-NN takes minutes a run")
    ap.add_argument("--k", type=int, default=5)
    ap.add_argument("--l1-train", type=int, default=20000, help="training images for the L1 rows")
    ap.add_argument("--l1-test", type=int, default=2000, help="test images for the L1 rows")
    ap.add_argument("--linear", action="store_true", help="add linear softmax vs LogisticRegression")
    ap.add_argument(
        "--int8",
        choices=("auto", "off"),
        default="auto",
        help="k-NN int8 products: as this machine decides, or off (the float32 path of a CPU without VNNI)",
    )
    ap.add_argument("--out", default=str(Path(__file__).parent / "results" / "classic_vs_sklearn.md"))
    args = ap.parse_args()

    from sklearn import __version__ as sk_version
    from sklearn.naive_bayes import GaussianNB as SkGNB
    from sklearn.neighbors import KNeighborsClassifier as SkKNN

    if args.int8 == "off":  # what the dispatch gives a CPU without int8 dot-product instructions
        import imgcls.classic.knn as knn_module

        knn_module.fast_int8 = lambda: False
    started = datetime.now()
    machine = machine_report()
    machine["int8_products"] = machine["int8_products"] and args.int8 != "off"  # what the k-NN used
    print(describe(machine), flush=True)
    load_start = os.getloadavg()
    train, test = load_dataset("fashion-mnist", "train"), load_dataset("fashion-mnist", "test")
    x_train = train.images.flatten(1).float() / 255  # (60000, 784) float32 in [0, 1]
    x_test = test.images.flatten(1).float() / 255
    y_train, y_test = train.labels, test.labels
    xn_train, xn_test, yn_train, yn_test = x_train.numpy(), x_test.numpy(), y_train.numpy(), y_test.numpy()
    k = args.k
    rows = []

    for metric, sk_metric, sk_repeats, n_train, n_test in (
        ("l2", "euclidean", args.repeats, len(x_train), len(x_test)),
        ("l1", "manhattan", args.sk_l1_repeats, args.l1_train, args.l1_test),
    ):
        stats = {}
        xt, yt, xq, yq = x_train[:n_train], y_train[:n_train], x_test[:n_test], yn_test[:n_test]

        def ours(metric: str = metric, stats: dict = stats, xt=xt, yt=yt, xq=xq) -> np.ndarray:
            clf = KNeighborsClassifier(k=k, metric=metric).fit(xt, yt)
            pred = clf.predict(xq).numpy()
            stats.update(
                kind=clf.stats.kind,
                exact=clf.stats.exact_per_query,
                share=clf.stats.product_share,
                screened=clf.stats.screened_share,
            )
            return pred

        def theirs(sk_metric: str = sk_metric, xt=xt, yt=yt, xq=xq) -> np.ndarray:
            return (
                SkKNN(n_neighbors=k, metric=sk_metric, n_jobs=-1)
                .fit(xt.numpy(), yt.numpy())
                .predict(xq.numpy())
            )

        def plain(metric: str = metric, xt=xt, yt=yt, xq=xq) -> np.ndarray:
            return brute_force(xt, yt, xq, metric, k)

        t_ours, p_ours = timed(ours, args.repeats)
        print(f"imgcls knn {metric} {n_train}x{n_test}: {spread(t_ours)} s ({stats})", flush=True)
        t_sk, p_sk = timed(theirs, sk_repeats) if sk_repeats else ([], None)
        print(f"sklearn knn {metric}: {spread(t_sk)} s", flush=True)
        t_plain, p_plain = timed(plain, 1)
        print(f"torch brute force knn {metric}: {spread(t_plain)} s", flush=True)
        dist_tie, vote_tie = knn_ties(xt, yt, xq, metric, k)
        row = {
            "name": f"k-NN {metric.upper()}, k={k}, {n_train:,} x {n_test:,}",
            "ours": t_ours,
            "sk": t_sk,
            "plain": t_plain,
            "acc_ours": float((p_ours == yq).mean()),
            "acc_sk": None if p_sk is None else float((p_sk == yq).mean()),
            "paper": PAPER["knn"],
            "note": f"{stats['kind']}; {stats['exact']:.0f} exact distances per query, {100 * stats['share']:.0f}% "
            f"of the products ({100 * stats['screened']:.0f}% dropped by the screen); plain torch brute force "
            f"{statistics.fmean(t_plain):.2f} s (1 run, acc {float((p_plain == yq).mean()):.4f})",
        }
        if p_sk is not None:
            differ = p_ours != p_sk
            row["agree"] = 1 - float(differ.mean())
            row["ties"] = (
                f"{int(differ.sum())} differ: {int((differ & dist_tie).sum())} distance tie, "
                f"{int((differ & vote_tie & ~dist_tie).sum())} vote tie, "
                f"{int((differ & ~dist_tie & ~vote_tie).sum())} unexplained "
                f"(ties in all: {int(dist_tie.sum())} distance, {int(vote_tie.sum())} vote)"
            )
        rows.append(row)

    def nb_ours() -> np.ndarray:
        return GaussianNB().fit(x_train, y_train).predict(x_test).numpy()

    def nb_theirs() -> np.ndarray:
        return SkGNB().fit(xn_train, yn_train).predict(xn_test)

    t_ours, p_ours = timed(nb_ours, args.repeats)
    t_sk, p_sk = timed(nb_theirs, args.repeats)
    print(f"naive Bayes: imgcls {spread(t_ours)} s, sklearn {spread(t_sk)} s", flush=True)
    differ = p_ours != p_sk
    rows.append(
        {
            "name": "Gaussian naive Bayes",
            "ours": t_ours,
            "sk": t_sk,
            "acc_ours": float((p_ours == yn_test).mean()),
            "acc_sk": float((p_sk == yn_test).mean()),
            "agree": 1 - float(differ.mean()),
            "ties": f"{int(differ.sum())} differ",
            "paper": PAPER["nb"],
            "note": "float64, var_smoothing 1e-9",
        }
    )

    if args.linear:
        rows.append(linear_row(x_train, y_train, x_test, y_test, args.repeats))

    load_end = os.getloadavg()
    lines = [
        "# imgcls.classic vs scikit-learn on Fashion-MNIST",
        "",
        f"`python benchmarks/classic_vs_sklearn.py` (repeats {args.repeats}, scikit-learn L1 k-NN "
        f"{args.sk_l1_repeats}, int8 products {args.int8}), {started:%Y-%m-%d %H:%M}.",
        "",
        f"Hardware: {describe(machine)}; scikit-learn {sk_version} with n_jobs=-1; "
        f"OMP_WAIT_POLICY={os.environ.get('OMP_WAIT_POLICY')}. The machine is shared: load average "
        f"{load_start[0]:.1f} at the start, {load_end[0]:.1f} at the end (2 cores).",
        "",
        "Data: Fashion-MNIST, 784 pixels as float32 in [0, 1], the same arrays for both (the first N of each "
        "split where a row says so). Times are fit + predict in seconds, mean ± std (min-max, n runs).",
        "",
        "| method | imgcls time (s) | scikit-learn time (s) | speed-up | imgcls acc | sklearn acc | paper acc "
        "| agreement | disagreements | notes |",
        "| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |",
    ]
    for r in rows:
        speed = f"{statistics.fmean(r['sk']) / statistics.fmean(r['ours']):.1f}x" if r["sk"] else "-"
        acc_sk = "-" if r.get("acc_sk") is None else f"{r['acc_sk']:.4f}"
        agree = f"{r['agree']:.4f}" if "agree" in r else "-"
        lines.append(
            f"| {r['name']} | {spread(r['ours'])} | {spread(r['sk'])} | {speed} | {r['acc_ours']:.4f} | {acc_sk} "
            f"| {r['paper']} | {agree} | {r.get('ties', '-')} | {r['note']} |"
        )
    text = "\n".join(lines) + "\n"
    print("\n" + text)
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(text)
    print(f"written to {out}")


def linear_row(
    x_train: torch.Tensor, y_train: torch.Tensor, x_test: torch.Tensor, y_test: torch.Tensor, repeats: int
) -> dict:
    """The linear softmax classifier (imgcls trainer, 10 epochs SGD) against LogisticRegression (lbfgs)."""
    import tempfile

    from sklearn.linear_model import LogisticRegression

    from imgcls.classic import run_baseline

    accs = []

    def ours() -> np.ndarray:
        with tempfile.TemporaryDirectory() as tmp:
            r = run_baseline("linear", device="cpu", out_dir=tmp, progress=False)
        accs.append(r.top1)
        return np.array([])

    def theirs() -> np.ndarray:
        clf = LogisticRegression(max_iter=200).fit(x_train.numpy(), y_train.numpy())
        return clf.predict(x_test.numpy())

    t_ours, _ = timed(ours, repeats)
    t_sk, p_sk = timed(theirs, 1)
    print(f"linear: imgcls {spread(t_ours)} s, sklearn {spread(t_sk)} s", flush=True)
    return {
        "name": "linear softmax / LogisticRegression",
        "ours": t_ours,
        "sk": t_sk,
        "acc_ours": statistics.fmean(accs),
        "acc_sk": float((p_sk == y_test.numpy()).mean()),
        "paper": PAPER["linear"],
        "note": "imgcls: 10 epochs SGD lr 0.05, cosine (trainer, incl. data loading); sklearn: lbfgs, 200 iterations",
    }


if __name__ == "__main__":
    main()
