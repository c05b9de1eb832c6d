"""Exact copies between image sets (what pretext.data is checked against)."""

import torch

from tppeft.data.overlap import count_in, image_keys
from tppeft.data.transforms import resize_images


def test_keys_match_exact_copies_at_the_input_size_and_nothing_else():
    gen = torch.Generator().manual_seed(0)
    grey = torch.randint(0, 256, (6, 1, 20, 20), dtype=torch.uint8, generator=gen)
    rgb_copy = grey[:2].expand(-1, 3, -1, -1)  # a grey image stored as RGB is the same image
    resized = resize_images(grey[2:4], 32)  # stored at another size, brought to the input size as the model sees it
    changed = grey[4:5].clone()
    changed[0, 0, 0, 0] ^= 1  # one grey level in one pixel
    blank = torch.full((1, 1, 20, 20), 9, dtype=torch.uint8)
    run = image_keys(torch.cat([grey, blank]), 32)
    assert count_in(image_keys(rgb_copy, 32), run) == 2
    assert count_in(image_keys(resized), run) == 2
    assert count_in(image_keys(changed, 32), run) == 0
    assert image_keys(blank) == [None] and count_in(image_keys(blank, 32), run) == 0  # constant: matches nothing
    assert len(set(run[:6])) == 6


def test_copies_across_splits_count_each_later_splits_images_found_in_an_earlier_one():
    from tppeft.data.overlap import copies_across

    gen = torch.Generator().manual_seed(1)
    images = torch.randint(0, 256, (8, 1, 6, 6), dtype=torch.uint8, generator=gen)
    blank = torch.zeros(2, 1, 6, 6, dtype=torch.uint8)  # constant images in two splits are not copies
    keys = {"train": image_keys(torch.cat([images[:4], blank[:1]])),
            "val": image_keys(torch.cat([images[4:6], images[:1], blank[1:]])),
            "test": image_keys(torch.cat([images[6:], images[4:5], images[1:3]]))}
    assert copies_across(keys) == {"val in train": 1, "test in train": 2, "test in val": 1}


def test_near_twins_are_the_same_picture_rescaled_or_marked_and_never_another_or_a_blank():
    from tppeft.data.overlap import near_copies_across, nearest, thumbnails

    gen = torch.Generator().manual_seed(2)
    smooth = torch.nn.functional.interpolate(torch.rand(6, 1, 5, 5, generator=gen), size=(40, 40), mode="bilinear")
    images = (smooth * 255).round().to(torch.uint8)
    rescaled = (images[:1].float() * 0.6 + 50).round().to(torch.uint8)  # another exposure of image 0
    marked = images[1:2].clone()
    marked[..., 3:5, 3:9] = 255  # a calliper mark on image 1
    blank = torch.full((2, 1, 40, 40), 7, dtype=torch.uint8)
    train, test = torch.cat([images[:4], blank[:1]]), torch.cat([rescaled, marked, images[4:], blank[1:]])
    closest = nearest(thumbnails(test), thumbnails(train))
    assert (closest[:2] >= 0.98).all() and (closest[2:] < 0.98).all()  # the others and the blank: no twin
    assert near_copies_across({"train": thumbnails(train), "test": thumbnails(test)}) == {"test in train": 2}
    assert image_keys(rescaled) != image_keys(images[:1])  # not an exact copy
    assert nearest(thumbnails(test), thumbnails(train[:0])).tolist() == [0.0] * len(test)
