"""The firstpaint model contract: features, policy, training, export, simulator (CONTRACT.md)."""
