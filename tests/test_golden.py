"""The golden-number check itself: tight everywhere, loose only for the keys a case names."""

from golden import TOLERANCES, differences


def test_a_named_key_is_checked_within_its_tolerance_and_only_it():
    loose = TOLERANCES["busi"]
    want = {"runs": [{"test": {"dice": 0.27, "loss": 1.29}, "pretext": {"loss_end": 0.5}}]}
    close = {"runs": [{"test": {"dice": 0.2705, "loss": 1.2901}, "pretext": {"loss_end": 0.5}}]}
    assert differences(close, want, "busi", loose=loose) == []
    assert differences(close, want, "busi") == ["busi.runs[0].test.dice: 0.2705 != 0.27",
                                                "busi.runs[0].test.loss: 1.2901 != 1.29"]
    far = {"runs": [{"test": {"dice": 0.273, "loss": 1.29}, "pretext": {"loss_end": 0.5001}}]}
    assert differences(far, want, "busi", loose=loose) == ["busi.runs[0].test.dice: 0.273 != 0.27",
                                                           "busi.runs[0].pretext.loss_end: 0.5001 != 0.5"]


def test_paired_statistics_of_a_named_metric_are_loose_too():
    want = {"paired": {"tpp-baseline": {"dice": {"mean": 0.0025, "per_seed": {"0": 0.0025}}}}}
    got = {"paired": {"tpp-baseline": {"dice": {"mean": 0.0021, "per_seed": {"0": 0.0021}}}}}
    assert differences(got, want, "busi", loose=TOLERANCES["busi"]) == []
    assert len(differences(got, want, "busi")) == 2
