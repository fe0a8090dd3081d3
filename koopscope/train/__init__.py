"""The training loop shared by the teacher and the HKD student, the presets, and post-hoc averaging of snapshots."""
