"""Example figures written at run time: test images with ground-truth and predicted masks, one column per arm."""

from __future__ import annotations

from pathlib import Path

import numpy as np

# Fill colours by class id (1, 2, ...); ground truth is always outlined in green.
_PALETTE = np.array([(230, 60, 50), (60, 120, 240), (240, 200, 40), (200, 80, 220), (40, 210, 210)], np.float32)
_OUTLINE = np.array((60, 230, 90), np.float32)


def _grey_rgb(image: np.ndarray) -> np.ndarray:
    """(C, H, W) in [0, 1] -> (H, W, 3) float 0..255."""
    img = image[0] if image.shape[0] == 1 else image.transpose(1, 2, 0)
    img = np.repeat(img[..., None], 3, axis=-1) if img.ndim == 2 else img
    return img.astype(np.float32) * 255


def _outline(mask: np.ndarray) -> np.ndarray:
    """Pixels of the foreground whose 4-neighbourhood leaves it."""
    fg = mask > 0
    pad = np.pad(fg, 1, mode="edge")
    inner = pad[:-2, 1:-1] & pad[2:, 1:-1] & pad[1:-1, :-2] & pad[1:-1, 2:]
    return fg & ~inner


def overlay(image: np.ndarray, mask: np.ndarray | None, outline: np.ndarray | None, alpha: float = 0.45) -> np.ndarray:
    out = _grey_rgb(image)
    if mask is not None:
        for k in range(1, int(mask.max(initial=0)) + 1):
            sel = mask == k
            out[sel] = (1 - alpha) * out[sel] + alpha * _PALETTE[(k - 1) % len(_PALETTE)]
    if outline is not None:
        out[_outline(outline)] = _OUTLINE
    return out.clip(0, 255).astype(np.uint8)


def write_mask_grid(path: Path, images: np.ndarray, truth: np.ndarray, predictions: dict[str, np.ndarray],
                    row_labels: list[str], cell: int = 192) -> Path:
    """Rows = images; columns = image, ground truth, then one prediction per arm (ground truth outlined)."""
    from PIL import Image, ImageDraw

    titles = ["image", "ground truth", *predictions]
    header, pad = 18, 4
    rows = len(images)
    canvas = Image.new("RGB", (len(titles) * (cell + pad) + pad, header + rows * (cell + pad) + pad), "white")
    draw = ImageDraw.Draw(canvas)
    for c, title in enumerate(titles):
        draw.text((pad + c * (cell + pad) + 4, 3), title, fill="black")
    for r in range(rows):
        cells = [overlay(images[r], None, None), overlay(images[r], truth[r], None)]
        cells += [overlay(images[r], pred[r], truth[r]) for pred in predictions.values()]
        for c, arr in enumerate(cells):
            tile = Image.fromarray(arr).resize((cell, cell), Image.NEAREST)
            canvas.paste(tile, (pad + c * (cell + pad), header + pad + r * (cell + pad)))
        draw.text((pad + 4, header + pad + r * (cell + pad) + 3), row_labels[r], fill="yellow")
    canvas.save(path)
    return path
