"""TPP, then fine-tuning, on your own folder of images, from Python.

The folder is DIR/{train,val,test}/<class>/* (or DIR/<class>/*: the splits are then drawn, stratified and
seeded), in any format PIL reads. Run: python examples/tpp_on_image_folder.py DIR [--epochs 6]
"""

from __future__ import annotations

import argparse

import tppeft


def main(argv: list[str] | None = None) -> dict[str, float]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("folder", help="image folder DIR/{train,val,test}/<class>/* or DIR/<class>/*")
    parser.add_argument("--backbone", default="bundled:b0", help="timm model name, checkpoint or bundled:b0")
    parser.add_argument("--epochs", type=int, default=6, help="epochs of each stage")
    parser.add_argument("--image-size", type=int, help="input side of the backbone (default: its own)")
    parser.add_argument("--output", help="new folder to keep the pre-trained target parameters in")
    args = parser.parse_args(argv)

    data = tppeft.load_data(args.folder, image_size=args.image_size, log=print)
    options = {"image_size": args.image_size} if args.image_size else {}

    # The TPP stage: LoRA pre-trained by masked-image modelling on the training images (no labels).
    model, pretext = tppeft.pretrain(args.backbone, data, method="lora", pretext="mae", epochs=args.epochs,
                                     output=args.output, **options)
    print("pretext loss per epoch:", [round(e["train_loss"], 4) for e in pretext])

    # Fine-tuning from the pre-trained LoRA: a new head, the best validation epoch kept.
    classifier, history = tppeft.finetune(model, data, epochs=args.epochs, **options)
    print("validation AUC per epoch:", [round(e["val"]["auc"], 4) for e in history])
    test = tppeft.evaluate(classifier, data, "test")
    print(f"test: ACC {test['acc']:.4f}, AUC {test['auc']:.4f} ({', '.join(data.class_names or [])})")
    return test


if __name__ == "__main__":
    main()
