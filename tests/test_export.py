"""`tppeft export`: adapter files, or a merged checkpoint that plain timm loads and that reproduces the
adapted model (tolerance 1e-4 on the logits: float32 rounding of the merge)."""

import json

import pytest
import timm
import torch
from safetensors.torch import load_file, save_file
from torch import nn

from tppeft.cli import main
from tppeft.config import PeftConfig
from tppeft.export import EXPORT_MARKER, HEAD_FILE, find_target_dir
from tppeft.targets import TargetParamError, get_target_method

TOLERANCE = 1e-4


def _finetuned_dir(b0, path, method, **kw):
    """What a fine-tuning stage leaves: trained target parameters (here: perturbed) and a 2-class head."""
    vit = b0.fresh_model()
    torch.manual_seed(0)
    m = get_target_method(PeftConfig(method=method, **kw), b0.identity)
    handle, names = m.attach(vit)
    g = torch.Generator().manual_seed(0)
    params = dict(vit.named_parameters())
    with torch.no_grad():
        for n in names:
            params[n].add_(torch.randn(params[n].shape, generator=g) * 0.05)
    m.save(handle, path)
    head = nn.Linear(192, 2)
    save_file({k: v.contiguous() for k, v in head.state_dict().items()}, str(path / HEAD_FILE))
    vit.eval()
    return lambda x: head(vit(x))


@pytest.mark.parametrize("method, kw", [("lora", {"use_dora": True}), ("ssf", {}), ("ia3", {})])
def test_merged_export_loads_in_plain_timm_and_matches(b0, tmp_path, method, kw, capsys):
    src = tmp_path / "finetuned"
    adapted = _finetuned_dir(b0, src, method, **kw)
    out = tmp_path / "merged"
    assert main(["export", str(src), "-o", str(out), "--merged"]) == 0
    assert "merged into the backbone" in capsys.readouterr().out
    x = torch.randn(3, 3, 64, 64, generator=torch.Generator().manual_seed(5))
    model = timm.create_model(f"local-dir:{out}", pretrained=True).eval()
    with torch.no_grad():
        assert (model(x) - adapted(x)).abs().max() < TOLERANCE
    # and the same weights load strictly into timm.create_model by name: plain timm keys only
    info = json.loads((out / EXPORT_MARKER).read_text())
    plain = timm.create_model(b0.identity["name"], **info["model_args"]).eval()
    plain.load_state_dict(load_file(out / "model.safetensors"), strict=True)
    with torch.no_grad():
        assert (plain(x) - adapted(x)).abs().max() < TOLERANCE


def test_unmergeable_method_exports_its_files_and_refuses_merging(b0, tmp_path, capsys):
    src = tmp_path / "finetuned"
    _finetuned_dir(b0, src, "adapter")
    assert main(["export", str(src), "-o", str(tmp_path / "m"), "--merged"]) == 2
    assert "cannot be merged" in capsys.readouterr().err
    assert not (tmp_path / "m").exists()
    out = tmp_path / "files"
    assert main(["export", str(src), "-o", str(out)]) == 0
    assert {p.name for p in out.iterdir()} >= {"target_params.safetensors", "target_params.json", HEAD_FILE,
                                              EXPORT_MARKER}
    assert main(["export", str(src), "-o", str(out)]) == 2  # existing export: only with --overwrite
    assert main(["export", str(src), "-o", str(out), "--overwrite"]) == 0


def test_run_folders_resolve_to_an_arm_and_seed(b0, tmp_path):
    for arm in ("baseline", "tpp"):
        _finetuned_dir(b0, tmp_path / "runs" / arm / "seed0" / "finetuned", "bitfit")
    assert find_target_dir(tmp_path) == tmp_path / "runs" / "tpp" / "seed0" / "finetuned"
    assert find_target_dir(tmp_path, arm="baseline").parts[-3] == "baseline"
    with pytest.raises(TargetParamError, match="seed 3"):
        find_target_dir(tmp_path, seed=3)
    with pytest.raises(TargetParamError, match="holds no saved target parameters"):
        find_target_dir(tmp_path / "runs")
