"""Files shipped inside the package: the default dataset, the reference backbone and the recipes."""

from __future__ import annotations

from pathlib import Path

PREFIX = "bundled:"
_ROOT = Path(__file__).resolve().parent

BUNDLED_FILES = {
    "breastmnist": _ROOT / "assets" / "data" / "breastmnist.npz",
    "b0": _ROOT / "assets" / "b0" / "b0_encoder.safetensors",
}
CONFIG_DIR = _ROOT / "configs"


def resolve(spec: str) -> Path:
    """Turn ``bundled:NAME`` into the shipped file's path; any other text is a filesystem path."""
    if spec.startswith(PREFIX):
        name = spec[len(PREFIX):]
        if name not in BUNDLED_FILES:
            raise FileNotFoundError(f"'{spec}': no bundled file of that name; bundled: {sorted(BUNDLED_FILES)}")
        return BUNDLED_FILES[name]
    return Path(spec).expanduser()


def bundled_configs() -> dict[str, Path]:
    """Bundled YAML recipes by name (file stem)."""
    return {p.stem: p for p in sorted(CONFIG_DIR.glob("*.yaml"))}


def config_path(spec: str | Path) -> Path:
    """A YAML file, or the bundled config of that name; anything else is a :class:`ConfigError` that suggests the
    closest bundled name."""
    from tppeft.errors import ConfigError, did_you_mean

    path = Path(spec).expanduser()
    if path.is_file():
        return path
    configs = bundled_configs()
    if str(spec) in configs:
        return configs[str(spec)]
    if path.exists():
        raise ConfigError(f"config '{spec}' is a folder, not a YAML file")
    hint = did_you_mean(path.stem, configs)
    raise ConfigError(f"config '{spec}' is neither a file nor a bundled config{hint}; `tppeft list` shows the "
                      "bundled configs")
