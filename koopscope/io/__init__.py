"""Safe, atomic file formats: checkpoints (safetensors + JSON) and small helpers."""
