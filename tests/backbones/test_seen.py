"""What a backbone saw in pre-training, from its metadata."""

from tppeft.backbones.seen import seen_by_name, set_stem


def test_a_pre_training_set_is_the_run_s_data_set_by_name_without_split_or_size_suffixes():
    assert [set_stem(n) for n in ("brain_mri_train.npz", "brain_mri_64", "adrenalmnist3d_train_central_slices",
                                  "busi_train", "breastmnist", "hippocampus_train_slices.npz")] == [
        "brain_mri", "brain_mri", "adrenalmnist3d", "busi", "breastmnist", "hippocampus"]
    b0 = {"trained_on": [["pneumoniamnist", 4708], ["breastmnist", 546], ["busi_train", 546]]}
    clean = {"trained_on": [{"file": "brain_mri_train.npz", "sha256": "ab", "splits": {"train": 4117}}]}
    assert seen_by_name(b0, "breastmnist") == ["breastmnist"] and seen_by_name(b0, "busi") == ["busi_train"]
    assert seen_by_name(b0, "hippocampus") == [] and seen_by_name({}, "breastmnist") == []
    assert seen_by_name(clean, "brain_mri_64") == ["brain_mri_train.npz"] and seen_by_name(clean, "breastmnist") == []
