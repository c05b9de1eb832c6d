"""TPP inside your own training loop: pre-train LoRA on your timm ViT with tppeft, then train as you always do.

Your data comes as a torchvision Dataset; tppeft takes it as it is (labels are not used by the TPP stage).
Run: python examples/tpp_in_your_loop.py DIR [--epochs 3] [--pretrained] (DIR as torchvision's ImageFolder)
"""

from __future__ import annotations

import argparse

import timm
import torch
from torch import nn
from torchvision import datasets, transforms

import tppeft


def main(argv: list[str] | None = None) -> float:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("folder", help="training images as DIR/<class>/* (torchvision ImageFolder)")
    parser.add_argument("--arch", default="vit_tiny_patch16_224", help="timm ViT")
    parser.add_argument("--pretrained", action="store_true", help="timm's hub weights (needs them downloaded)")
    parser.add_argument("--image-size", type=int, default=224)
    parser.add_argument("--epochs", type=int, default=3)
    args = parser.parse_args(argv)

    vit = timm.create_model(args.arch, pretrained=args.pretrained, num_classes=0, img_size=args.image_size)
    to_input = transforms.Compose([transforms.Grayscale(3), transforms.Resize((args.image_size, args.image_size)),
                                   transforms.ToTensor()])  # pixels in [0, 1]: tppeft normalises as the ViT expects
    train = datasets.ImageFolder(args.folder, transform=to_input)

    # TPP: the LoRA matrices are pre-trained (MAE) on your images; the ViT's own weights stay frozen.
    model, history = tppeft.pretrain(vit, train, method="lora", pretext="mae", epochs=args.epochs, r=8)
    print("pretext loss per epoch:", [round(e["train_loss"], 4) for e in history])

    # Your loop: the returned peft model trains its LoRA parameters (requires_grad) and your head.
    config = timm.data.resolve_data_config({}, model=vit)
    normalise = transforms.Normalize(config["mean"], config["std"])
    head = nn.Linear(model.num_features, len(train.classes))
    params = [p for p in model.parameters() if p.requires_grad] + list(head.parameters())
    optimizer = torch.optim.AdamW(params, lr=1e-3)
    loader = torch.utils.data.DataLoader(train, batch_size=16, shuffle=True)
    model.train()
    for epoch in range(args.epochs):
        total = 0.0
        for images, labels in loader:
            loss = nn.functional.cross_entropy(head(model(normalise(images))), labels)
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            total += loss.item() * len(labels)
        print(f"epoch {epoch + 1}: training loss {total / len(train):.4f}")
    return total / len(train)


if __name__ == "__main__":
    main()
