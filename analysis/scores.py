"""How good are the features? Weighted k-NN (``core.knn``) and a linear probe
(scikit-learn), each beside its references: the same backbone at random initialisation and
raw pixels. A score without its reference says little at CPU scale, where a random ViT's
features already separate simple classes well above chance.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import numpy as np
import torch

from analysis.features import pixel_features, split_features
from core.features import Features
from core.knn import KNN_K, KNN_TEMP, confusion_matrix, weighted_knn_predict

if TYPE_CHECKING:  # annotation only: the pure functions here need no run or checkpoint machinery
    from analysis.source import Source


def knn_eval(train_x: np.ndarray, train_y: np.ndarray, test_x: np.ndarray, test_y: np.ndarray,
             k: int = KNN_K, T: float = KNN_TEMP, num_classes: int | None = None) -> tuple[float, np.ndarray]:
    """Top-1 in [0, 1] and predictions (M,) of the weighted k-NN; unlabelled rows are dropped."""
    tr, te = train_y >= 0, test_y >= 0
    if not tr.any() or not te.any():
        raise ValueError("k-NN needs labelled train and test images; this data is unlabelled")
    c = num_classes or int(max(train_y.max(), test_y.max())) + 1
    pred = weighted_knn_predict(torch.from_numpy(train_x[tr]), torch.from_numpy(train_y[tr]),
                                torch.from_numpy(test_x[te]), k, T, c).numpy()
    return float((pred == test_y[te]).mean()), pred


def linear_probe(train_x: np.ndarray, train_y: np.ndarray, test_x: np.ndarray, test_y: np.ndarray,
                 C: float = 1.0, seed: int = 0) -> tuple[float, np.ndarray]:
    """Top-1 in [0, 1] and predictions of a multinomial logistic regression on standardised
    features (frozen backbone, as in linear evaluation)."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    tr, te = train_y >= 0, test_y >= 0
    if len(np.unique(train_y[tr])) < 2:
        raise ValueError("a linear probe needs at least two labelled classes in the train split")
    clf = make_pipeline(StandardScaler(), LogisticRegression(C=C, max_iter=500, random_state=seed))
    clf.fit(train_x[tr], train_y[tr])
    pred = clf.predict(test_x[te])
    return float((pred == test_y[te]).mean()), pred


@dataclass
class ScoreReport:
    """Scores of one backbone on one dataset, with references. Accuracies in [0, 1]."""

    knn_top1: float
    linear_top1: float  # NaN when the probe was not run
    random_init_knn_top1: float
    random_init_linear_top1: float
    pixels_knn_top1: float
    pixels_linear_top1: float
    chance: float  # 1 / number of classes
    confusion: np.ndarray  # (C, C) k-NN counts, row = true class, column = predicted
    classes: list[str] = field(default_factory=list)
    k: int = KNN_K
    T: float = KNN_TEMP
    feature: str = "cls"
    n_train: int = 0
    n_val: int = 0


def score_features(train: Features, val: Features, classes: list[str], k: int = KNN_K, T: float = KNN_TEMP,
                   feature: str = "cls", linear: bool = True) -> tuple[float, float, np.ndarray]:
    """(k-NN top-1, linear top-1 or NaN, confusion matrix) for one pair of feature sets."""
    c = max(len(classes), int(max(train.labels.max(), val.labels.max())) + 1)
    knn, pred = knn_eval(train.get(feature), train.labels, val.get(feature), val.labels, k, T, c)
    cm = confusion_matrix(torch.from_numpy(pred), torch.from_numpy(val.labels[val.labels >= 0]), c).numpy()
    lin = linear_probe(train.get(feature), train.labels, val.get(feature), val.labels)[0] if linear else float("nan")
    return knn, lin, cm


def score_source(source: Source, k: int = KNN_K, T: float = KNN_TEMP, feature: str = "cls", linear: bool = True,
                 max_train: int = 0, max_val: int = 0) -> ScoreReport:
    """k-NN and linear-probe scores of an ``analysis.source.Source`` on its data (train split
    as the bank, val split as queries), with random-init and pixel references. Cached."""
    from analysis.source import split_images

    params = {"k": k, "T": T, "feature": feature, "linear": linear, "max_train": max_train,
              "max_val": max_val, **source.data_params()}

    def compute() -> ScoreReport:
        tr, va = split_features(source, "train", max_train), split_features(source, "val", max_val)
        rtr = split_features(source, "train", max_train, baseline="random_init")
        rva = split_features(source, "val", max_val, baseline="random_init")
        tr_img, tr_y, _, classes = split_images(source, "train", max_train)
        va_img, va_y, _, _ = split_images(source, "val", max_val)
        knn, lin, cm = score_features(tr, va, classes, k, T, feature, linear)
        rknn, rlin, _ = score_features(rtr, rva, classes, k, T, feature, linear)
        c = cm.shape[0]
        px_tr, px_va = pixel_features(tr_img), pixel_features(va_img)
        pknn = knn_eval(px_tr, tr_y, px_va, va_y, k, T, c)[0]
        plin = linear_probe(px_tr, tr_y, px_va, va_y)[0] if linear else float("nan")
        return ScoreReport(knn, lin, rknn, rlin, pknn, plin, 1.0 / c, cm, classes, k, T, feature,
                           int((tr_y >= 0).sum()), int((va_y >= 0).sum()))

    return source.cache.cached_dataclass(ScoreReport, "scores", source.checkpoint, params, compute)
