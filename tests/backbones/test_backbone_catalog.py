"""`tppeft backbone info` and `tppeft backbone import`, and hub names read from the local hub cache offline."""

import shutil

import pytest
import torch
from test_backbone_formats import PATCH, fixed_noise, hf_vit_mae, images, keep_restore, mae_task

from tppeft.backbones import BackboneError, build_backbone, frozen_state_digest
from tppeft.cli import main
from tppeft.config import BackboneConfig

pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def folder(tmp_path_factory):
    out = tmp_path_factory.mktemp("hf") / "tiny-mae"
    hf_vit_mae(out)
    return out


def test_info_names_family_heads_and_normalisation(folder, capsys):
    assert main(["backbone", "info", str(folder)]) == 0
    out = capsys.readouterr().out
    for text in ("layout         hf:vit_mae (family mae)", f"32 px, patch {PATCH} (4 x 4 patches", "eps 1e-12",
                 "MAE decoder    width 32, depth 2, 4 heads", "patches ordered (row, column, channel)",
                 "DINO head      none", "from the mae family's default", "parameters     encoder ",
                 "trained on per-patch normalised pixels"):
        assert text in out, (text, out)
    assert "trained on     not recorded" in out
    assert main(["backbone", "info", "bundled:b0"]) == 0
    out = capsys.readouterr().out
    assert "1e-06 in the blocks, 1e-05 at the end (b0's)" in out
    assert "trained on     pneumoniamnist (4,708 images); breastmnist (546 images)" in out
    assert "pool keys      7,227 images keyed at 64 px (b0_pool_keys.bin): PneumoniaMNIST's" in out


def test_a_decoder_trained_on_raw_pixels_is_flagged(tmp_path):
    raw = tmp_path / "raw"
    hf_vit_mae(raw, norm_pix_loss=False)
    backbone = build_backbone(BackboneConfig(checkpoint=str(raw)))
    assert backbone.decoder_meta["norm_pix_loss"] is False
    assert "WARNING: the decoder was trained with norm_pix_loss=False" in mae_task(backbone).describe()
    assert "WARNING" not in mae_task(backbone, norm_pix_loss=False).describe()


def test_import_writes_the_tools_layout_with_the_same_numbers(folder, tmp_path, capsys):
    out = tmp_path / "imported"
    assert main(["backbone", "import", str(folder), "-o", str(out)]) == 0
    assert "use it: tppeft run --set backbone.checkpoint=" in capsys.readouterr().out
    assert sorted(p.name for p in out.iterdir()) == ["backbone_decoder.safetensors", "backbone_encoder.safetensors",
                                                     "backbone_meta.json"]
    source = build_backbone(BackboneConfig(checkpoint=str(folder)))
    copy = build_backbone(BackboneConfig(checkpoint=str(out / "backbone_encoder.safetensors")))
    assert copy.identity["layout"] == "tppeft" and copy.mean == source.mean
    assert frozen_state_digest(copy.model) == frozen_state_digest(source.model)
    assert copy.decoder_meta == source.decoder_meta  # patch order, eps and origin carried
    x = images()
    keep, restore = keep_restore(fixed_noise(), 0.75)
    with torch.no_grad():
        assert torch.equal(mae_task(copy, decoder="pretrained").masked_loss(x, keep, restore),
                           mae_task(source, decoder="pretrained").masked_loss(x, keep, restore))
        assert torch.equal(copy.model.forward_features(x), source.model.forward_features(x))
    # an existing import is replaced only on request; a bad source leaves nothing behind
    assert main(["backbone", "import", str(folder), "-o", str(out)]) == 2
    assert "is not empty; pass --overwrite" in capsys.readouterr().err
    assert main(["backbone", "import", str(folder), "-o", str(out), "--overwrite"]) == 0
    assert main(["backbone", "import", str(tmp_path / "missing"), "-o", str(tmp_path / "new")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "missing' does not exist" in err[0] and not (tmp_path / "new").exists()


def test_an_imported_backbone_keeps_the_keys_of_what_it_saw(tmp_path, capsys):
    out = tmp_path / "b0"
    assert main(["backbone", "import", "bundled:b0", "-o", str(out)]) == 0
    assert "backbone_pool_keys.bin" in capsys.readouterr().out
    source = build_backbone(BackboneConfig(checkpoint="bundled:b0"))
    copy = build_backbone(BackboneConfig(checkpoint=str(out / "backbone_encoder.safetensors")))
    assert copy.pool_keys == out / "backbone_pool_keys.bin"
    assert copy.pool_keys.read_bytes() == source.pool_keys.read_bytes()
    assert copy.identity["pool_keys"] == {**source.identity["pool_keys"], "file": "backbone_pool_keys.bin"}
    assert copy.identity["trained_on"] == source.identity["trained_on"]


def _cached_repo(cache, repo: str, files_from) -> None:
    """``repo`` in a local hub cache, as huggingface_hub lays it out."""
    org, name = repo.split("/")
    root = cache / f"models--{org}--{name}"
    snap = root / "snapshots" / ("0" * 40)
    shutil.copytree(files_from, snap)
    (root / "refs").mkdir()
    (root / "refs" / "main").write_text("0" * 40)


def test_hub_names_offline_come_from_the_local_cache(folder, tmp_path, monkeypatch):
    import huggingface_hub.constants

    from tppeft.backbones.formats import hub

    monkeypatch.setattr(hub, "hub_reachable", lambda timeout=3.0: False)
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_CACHE", str(tmp_path))
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", False)
    _cached_repo(tmp_path, "org/tiny-mae", folder)
    backbone = build_backbone(BackboneConfig(checkpoint="hf-hub:org/tiny-mae"))
    assert backbone.identity["layout"] == "hf:vit_mae" and backbone.decoder_state is not None
    assert huggingface_hub.constants.HF_HUB_OFFLINE is False  # offline mode only for the call
    with pytest.raises(BackboneError, match="'hf-hub:org/absent': cannot be read .the Hugging Face Hub is unreachable "
                       "and the repository is not in the local hub cache"):
        build_backbone(BackboneConfig(checkpoint="hf-hub:org/absent"))
    # timm's hub layout (config.json naming the architecture), e.g. a `tppeft export --merged` folder
    import timm
    from timm.models import save_for_hf

    vit = timm.create_model("vit_tiny_patch16_224", img_size=32, patch_size=8, num_classes=0)
    save_for_hf(vit, str(tmp_path / "timm-src"), model_args={"img_size": 32, "patch_size": 8})
    _cached_repo(tmp_path, "org/tiny-timm", tmp_path / "timm-src")
    from_timm = build_backbone(BackboneConfig(checkpoint="hf-hub:org/tiny-timm"))
    assert from_timm.identity["layout"] == "timm" and from_timm.image_size == 32
    assert frozen_state_digest(from_timm.model) == frozen_state_digest(vit.eval())


def test_export_rebuilds_a_backbone_read_from_its_shapes(tmp_path, capsys):
    """A merged export of target parameters trained on a `.pth` backbone (timm name chosen from the shapes,
    heads from backbone.heads) rebuilds that backbone from target_params.json alone."""
    from test_backbone_formats import HEADS, SIZE, MaeReference, randomise

    from tppeft.config import PeftConfig
    from tppeft.targets import get_target_method

    ref = MaeReference()
    randomise(ref)
    torch.save({"model": ref.state_dict()}, tmp_path / "mae.pth")
    backbone = build_backbone(BackboneConfig(checkpoint=str(tmp_path / "mae.pth"), heads=HEADS))
    assert backbone.identity["name_source"] == "shapes"
    vit = backbone.fresh_model()
    method = get_target_method(PeftConfig(), backbone.identity)
    handle, _ = method.attach(vit)
    method.save(handle, tmp_path / "target")
    assert main(["export", str(tmp_path / "target"), "-o", str(tmp_path / "merged"), "--merged"]) == 0
    assert "merged into the backbone" in capsys.readouterr().out
    x = images()
    import timm

    merged = timm.create_model(f"local-dir:{tmp_path / 'merged'}", pretrained=True).eval()
    with torch.no_grad():
        assert (merged(x) - vit.eval()(x)).abs().max() < 1e-4
    assert x.shape[-1] == SIZE
