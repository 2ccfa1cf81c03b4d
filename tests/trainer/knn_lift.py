"""The science tests' one criterion for "k-NN clearly above random initialisation"."""

from trainer.store import read_metric


def assert_knn_lift(run_dir, label: str) -> None:
    """The run's last online k-NN is clearly above its first (step 0: the same backbone at random
    initialisation, same bank and queries): at least 3 points and 1.2 times. Prints the curve."""
    steps, knn = read_metric(run_dir, "eval/knn_top1")
    print(f"\n{label} k-NN {knn[0]:.3f} (random init) -> " + " -> ".join(f"{k:.3f}" for k in knn[1:])
          + f" (steps {', '.join(str(int(s)) for s in steps)}; chance 0.125)")
    # 1000 queries: one k-NN top-1 has a standard error of about 0.013
    assert knn[-1] >= knn[0] + 0.03 and knn[-1] >= 1.2 * knn[0]
