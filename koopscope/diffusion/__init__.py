"""EDM teacher: U-Net backbone, preconditioning, loss and ODE samplers."""
