"""The documentation: the results pages generated from results/ (docs/hooks/results.py, without MkDocs), the nav of
mkdocs.yml against the pages in docs/, and the README's links. The strict MkDocs build (.ci/run) checks the rest."""

import importlib.util
import json
import re
import shutil
import sys
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[1]
DOCS = ROOT / "docs"
RESULTS = ROOT / "results"


@pytest.fixture(scope="module")
def hook():
    spec = importlib.util.spec_from_file_location("tppeft_docs_results_hook", DOCS / "hooks" / "results.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    yield module
    del sys.modules[spec.name]


def test_every_result_folder_in_the_repository_gets_a_page(hook):
    results = hook.find_results(RESULTS)
    assert [r.name for r in results] == sorted(p.parent.relative_to(RESULTS).as_posix()
                                               for p in RESULTS.rglob("summary.json"))
    assert "validity/brain_mri_few_labels" in [r.name for r in results]
    for r in results:
        page = hook.render_page(r)
        assert page.startswith(f"# {r.name}: TPP comparison on ")
        assert "Verdict on the primary metric" in page and "## Test metrics" in page
        for figure in re.findall(r"!\[[^\]]*\]\(([^)]+)\)", page):
            assert (r.path / figure).is_file(), f"{r.name}: the page shows {figure}, which the folder lacks"
        listing = hook.results_list(results)
        assert f"]({r.name}/index.md)" in listing


def test_the_brain_mri_page_has_the_numbers_of_its_summary(hook):
    (r,) = [r for r in hook.find_results(RESULTS) if r.name == "validity/brain_mri_few_labels"]
    page = hook.render_page(r)
    assert "tpp − baseline +0.012 AUC, 95% CI [+0.003, +0.020], tpp better in 6 of 8 seeds" in page
    assert "| tpp | 8 | 15 | 0.611 ± 0.026 | [0.594, 0.628] | 0.839 ± 0.012 | [0.831, 0.846] |" in page
    assert "![paired differences" in page and "## Notes" in page and "```yaml" in page
    assert "`loss_curves.png` is not kept" not in page  # the curves figure is left out with its heading
    assert "> **Fine-tuning may be too short**" in page  # 15 epochs: best epoch in the last quarter in 5 of 8 seeds
    (row,) = [line for line in hook.results_list([r]).split("\n") if line.startswith("| [validity/")]
    assert row.endswith("| `baseline` (5 of 8), `tpp` (5 of 8) |")  # not its 73-epoch baseline_matched


def test_a_new_result_folder_is_picked_up_without_any_change(hook, tmp_path):
    source = RESULTS / "validity" / "brain_mri_few_labels"
    new = tmp_path / "results" / "hippocampus" / "slices"
    new.mkdir(parents=True)
    summary = json.loads((source / "summary.json").read_text())
    summary["dataset"] = "hippocampus"
    summary["figures"] = ["examples.png"]  # listed by the summary, not kept in the folder
    (new / "summary.json").write_text(json.dumps(summary))
    shutil.copy(source / "metric_by_arm.png", new)
    (tmp_path / "results" / ".hidden" / "x").mkdir(parents=True)
    (tmp_path / "results" / ".hidden" / "x" / "summary.json").write_text("{}")
    (r,) = hook.find_results(tmp_path / "results")
    assert r.name == "hippocampus/slices" and r.page == "results/hippocampus/slices/index.md"
    page = hook.render_page(r)
    assert page.startswith("# hippocampus/slices: TPP comparison on hippocampus")
    assert "](metric_by_arm.png)" in page and "](paired_differences.png)" not in page
    assert "`examples.png` is not kept in the result folder" in page and "## Notes" not in page
    assert "[hippocampus/slices](hippocampus/slices/index.md)" in hook.results_list([r])


def _nav_pages(items) -> list[str]:
    pages = []
    for item in items:
        value = next(iter(item.values())) if isinstance(item, dict) else item
        pages += _nav_pages(value) if isinstance(value, list) else [value]
    return pages


def test_the_nav_lists_every_page_once_and_only_pages_that_exist():
    config = yaml.safe_load((ROOT / "mkdocs.yml").read_text())
    assert config["hooks"] == ["docs/hooks/results.py"] and "/hooks/" in config["exclude_docs"]
    nav = _nav_pages(config["nav"])
    written = sorted(p.relative_to(DOCS).as_posix() for p in DOCS.rglob("*.md") if "hooks" not in p.parts)
    assert sorted(nav) == written, "mkdocs.yml's nav and the pages in docs/ differ"
    assert "results/index.md" in nav and "<!-- results:list -->" in (DOCS / "results" / "index.md").read_text()


def test_the_readme_links_to_files_that_exist_and_keeps_its_commands():
    readme = (ROOT / "README.md").read_text()
    links = [link.split("#")[0] for link in re.findall(r"\]\(([^)]+)\)", readme) if "://" not in link]
    assert links and all((ROOT / link).exists() for link in links), \
        [link for link in links if not (ROOT / link).exists()]
    linked_pages = {link for link in links if link.startswith("docs/")}
    assert {"docs/getting-started.md", "docs/configuration.md", "docs/results/index.md"} <= linked_pages
    setup = "pip install torch==2.14.1 torchvision==0.29.1 && pip install -e . && tppeft run --output runs/demo"
    tests, docs = 'pip install -e ".[dev]" && python -m pytest -q', 'pip install -e ".[docs]" && mkdocs serve'
    assert setup in readme and tests in readme and docs in readme
    assert "breastmnist.npz" in readme and "CC BY 4.0" in readme and "Apache-2.0" in readme


def test_the_validity_page_shows_the_backbones_probes_from_their_file(hook):
    probes = json.loads((RESULTS / hook.PROBES).read_text())
    table = hook.probes_table(probes)
    row = next(r for r in probes["rows"] if r["backbone"] == "clean" and r["data"] == "breastmnist")
    line = next(line for line in table.splitlines() if line.startswith(f"| breastmnist | {row['train_labels']:,} |"))
    assert f"{row['test_auc']:.3f}" in line and "(saw it)" in line  # b0 saw BreastMNIST, the clean one did not
    assert hook.PROBES_MARKER in (RESULTS.parent / "docs" / hook.PROBES_PAGE).read_text()


def test_every_bundled_config_is_in_the_getting_started_table():
    from tppeft.bundled import bundled_configs

    page = (ROOT / "docs" / "getting-started.md").read_text()
    table = page.split("## Bundled configs", 1)[1].split("\n## ", 1)[0]
    listed = set(re.findall(r"`([a-z0-9_]+)`", table))
    missing = sorted(set(bundled_configs()) - listed)
    assert not missing, f"bundled configs missing from docs/getting-started.md's table: {missing}"
