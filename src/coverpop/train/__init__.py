"""Stage train: cover tensors, timm models, weights, the training loop, checkpoints."""
