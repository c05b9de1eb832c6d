"""tppeft: Target-Parameter Pre-training (TPP) before parameter-efficient fine-tuning."""

__version__ = "0.1.0"
