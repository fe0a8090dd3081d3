"""One-step baselines distilled from the same teacher and trajectory store as HKD (docs/method.md §9).

``kd``: knowledge distillation (Luhman & Luhman 2021), x_T -> the teacher's sample in one call.
``cd``: consistency distillation (Song et al. 2023) on adjacent grid times of the stored Heun trajectories.
"""
