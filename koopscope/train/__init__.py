"""The training loop shared by the teacher and the HKD student, and the presets."""
