"""MotionCharacter on diffusers: ID insertion, motion control, losses, data, training (see docs/model.md)."""
