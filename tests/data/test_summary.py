import numpy as np

from data import trees
from patchpu_keras.data import load_index
from patchpu_keras.data.summary import format_summary, summarize


def test_summary_counts_what_the_index_holds(tmp_path):
    trees.make_voc(tmp_path, bad=True)
    index = load_index(str(tmp_path), warn=False)
    summary = summarize(index, label_seed=1200, partial_fraction=0.25)
    full = index.train.full_labels
    assert summary["splits"]["train"]["images"] == 10 and summary["splits"]["test"]["images"] == 6
    assert summary["splits"]["train"]["mean_labels_per_image"] == full.sum() / len(full)
    assert summary["splits"]["train"]["per_class"]["person"] == 3  # 2008_000001, _000003, _000006
    assert summary["splits"]["test"]["per_class"]["bottle"] == 0  # only difficult bottles
    regimes = summary["regimes"]
    assert regimes["single_positive"]["positives_per_image"] == 1.0
    assert regimes["single_positive"]["negatives_per_image"] == 0.0
    assert regimes["partial"]["observed_fraction"] == 5 / 20  # round(0.25 * 20) labels per image
    assert regimes["full"]["observed_fraction"] == 1.0
    np.testing.assert_allclose(regimes["full"]["positives_per_image"], full.sum(1).mean())
    assert summary["problems"]["skipped"]["missing file"] == 1
    text = format_summary(summary)
    assert "train: 10 images, 1.50 labels per image" in text
    assert "Files skipped, converted or left out: 8" in text
    assert "  skipped: unknown class name: 1\n    [train] JPEGImages/2009_000007.jpg" in text
    partial = regimes["partial"]
    assert partial["positives_per_image"] + partial["negatives_per_image"] == 5.0
    assert (f"partial          {partial['positives_per_image']:.2f} positives, "
            f"{partial['negatives_per_image']:.2f} negatives, 15.00 unknown (fraction 0.25)") in text


def test_summary_of_observed_only_data_says_what_is_not_available(tmp_path):
    trees.make_folders(tmp_path, test=False)
    summary = summarize(load_index(str(tmp_path)), regimes=("observed", "single_positive", "full"))
    assert summary["splits"]["train"]["labels"] == "observed" and summary["test_labels"] == "observed"
    assert summary["regimes"]["observed"]["positives_per_image"] > 1.0  # img002 is in two folders
    assert summary["regimes"]["single_positive"]["positives_per_image"] == 1.0
    assert "only has observed labels" in summary["regimes"]["full"]["error"]
    text = format_summary(summary)
    assert "test is evaluated on observed labels" in text and "full             not available" in text
