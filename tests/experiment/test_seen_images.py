"""Which of a run's images the backbone saw in pre-training, from the keys `tppeft backbone-pretrain` writes."""

from types import SimpleNamespace

import torch

from tppeft.data.overlap import image_keys, keys_bytes
from tppeft.experiment.comparison import seen_images
from tppeft.experiment.context import Context, split_keys


class _Ctx(SimpleNamespace):
    """The parts of a run's context the check reads, with the context's own pool and test-part rules."""

    backbone_pool = property(Context.backbone_pool.func)
    test_unseen_by_backbone = property(Context.test_unseen_by_backbone.func)


def _ctx(tmp_path, pool: torch.Tensor, splits: dict, keyed_at: int = 8, write: bool = True):
    path = tmp_path / "bb_pool_keys.bin"
    if write:
        path.write_bytes(keys_bytes(image_keys(pool, keyed_at)))
    backbone = SimpleNamespace(pool_keys=path, image_size=8,
                               identity={"pool_keys": {"file": path.name, "image_size": keyed_at}})
    data = SimpleNamespace(splits={k: SimpleNamespace(images=v, size=8) for k, v in splits.items()})
    task = SimpleNamespace(pretext_images=lambda s: s.images)
    return _Ctx(backbone=backbone, data=data, task=task, split_keys=lambda: split_keys(data, task))


def test_the_images_a_backbone_saw_are_counted_per_split_and_a_check_that_cannot_be_made_says_why(tmp_path):
    g = torch.Generator().manual_seed(0)
    images = torch.randint(0, 256, (10, 1, 8, 8), generator=g, dtype=torch.uint8)
    blank = torch.zeros(1, 1, 8, 8, dtype=torch.uint8)  # constant: never counted as seen
    pool = torch.cat([images[:6], blank])
    splits = {"train": images[:5], "val": torch.cat([images[5:7], blank]), "test": images[7:]}
    notes: list[str] = []
    assert seen_images(_ctx(tmp_path, pool, splits), notes.append) == {
        "image_size": 8, "train": [5, 5], "val": [1, 3], "test": [0, 3]}
    assert not notes
    assert seen_images(_ctx(tmp_path, pool, splits, keyed_at=16), notes.append) is None
    assert "keyed at 16 px and this run reads its images at 8 px" in notes[-1]
    (tmp_path / "bb_pool_keys.bin").unlink()
    assert seen_images(_ctx(tmp_path, pool, splits, write=False), notes.append) is None
    assert "bb_pool_keys.bin (the keys of the backbone's pre-training images) is missing" in notes[-1]
    ctx = _ctx(tmp_path, pool, splits)
    ctx.backbone.pool_keys = None  # a backbone whose metadata has no keys: nothing to check, nothing said
    assert seen_images(ctx, notes.append) is None and len(notes) == 2


def test_the_test_images_a_backbone_never_saw_are_a_part_only_where_it_saw_some(tmp_path):
    g = torch.Generator().manual_seed(1)
    images = torch.randint(0, 256, (10, 1, 8, 8), generator=g, dtype=torch.uint8)
    splits = {"train": images[:4], "val": images[4:6], "test": images[6:]}
    partly = _ctx(tmp_path, images[:8], splits)  # the pool holds test images 6 and 7, not 8 and 9
    assert partly.test_unseen_by_backbone.tolist() == [False, False, True, True]
    assert _ctx(tmp_path, images[:6], splits).test_unseen_by_backbone is None  # none seen: the whole split
    assert _ctx(tmp_path, images, splits).test_unseen_by_backbone is None  # all seen: nothing left
    assert _ctx(tmp_path, images, splits, keyed_at=16).test_unseen_by_backbone is None  # keyed at another size
