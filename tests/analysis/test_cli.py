"""The CLI writes PNG, HTML and CSV for each analysis and refuses bad input in one line."""

import csv

import pytest

from analysis.__main__ import main
from tests.analysis.conftest import make_run


def _rows(path):
    with open(path) as f:
        return list(csv.reader(f))


@pytest.fixture(scope="module")
def dino_run(tmp_path_factory):
    return make_run(tmp_path_factory.mktemp("runs"))[0]


def test_scores_and_diagnosis_files(dino_run, tmp_path, capsys):
    out = tmp_path / "report"
    assert main([str(dino_run), "--out", str(out), "--what", "knn,diagnose,reconstruction"]) == 0
    printed = capsys.readouterr().out
    for name in ("scores.csv", "scores.png", "scores.html", "plotly.min.js", "confusion.csv", "confusion.html",
                 "diagnosis.csv", "feature_stats.csv", "spectrum.png", "spectrum.html"):
        assert (out / name).is_file() and (out / name).stat().st_size > 0, name
    scores = dict(_rows(out / "scores.csv")[1:])
    assert 0 <= float(scores["k-NN top-1"]) <= 1 and float(scores["chance"]) == pytest.approx(1 / 8)
    assert "reconstruction: skipped" in printed
    assert _rows(out / "diagnosis.csv")[1][0] == "checkpoint"
    assert 'src="plotly.min.js"' in (out / "scores.html").read_text()  # offline: the bundle sits beside it


def test_picture_files(dino_run, tmp_path):
    out = tmp_path / "report"
    assert main([str(dino_run), "--out", str(out), "--what", "umap,attention,attribution", "--embedding", "pca",
                 "--n-images", "3"]) == 0
    for name in ("embedding.csv", "embedding.png", "embedding.html", "attention.png", "attention_jaccard.csv",
                 "attribution.png", "attribution.csv"):
        assert (out / name).is_file() and (out / name).stat().st_size > 0, name
    emb = _rows(out / "embedding.csv")
    assert emb[0] == ["index", "label", "class", "x", "y"] and len(emb) == 1 + 120  # the train split
    assert len(_rows(out / "attention_jaccard.csv")) == 1 + 3


def test_mae_and_ijepa_runs(tmp_path):
    mae_dir, _ = make_run(tmp_path / "runs", "mae", name="m")
    assert main([str(mae_dir), "--out", str(tmp_path / "m"), "--what", "reconstruction", "--n-images", "2",
                 "--mask-ratio", "0.5"]) == 0
    assert len(_rows(tmp_path / "m" / "reconstruction.csv")) == 3
    ij_dir, _ = make_run(tmp_path / "runs", "ijepa", name="j", **{"data.image_size": 32, "ijepa.pred_dim": 32})
    assert main([str(ij_dir), "--out", str(tmp_path / "j"), "--what", "jepa", "--n-images", "2"]) == 0
    assert (tmp_path / "j" / "jepa.png").is_file()


def test_bad_inputs_exit_2_with_one_line(tmp_path, capsys):
    assert main([str(tmp_path / "nope.pth"), "--out", str(tmp_path / "o")]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error:") and "does not exist" in err and "\n" not in err
    assert main([str(tmp_path), "--out", str(tmp_path / "o"), "--what", "tsne"]) == 2
    assert "tsne" in capsys.readouterr().err
    (tmp_path / "bad.pth").write_bytes(b"garbage")
    assert main([str(tmp_path / "bad.pth"), "--out", str(tmp_path / "o")]) == 2
    assert "not a readable" in capsys.readouterr().err
