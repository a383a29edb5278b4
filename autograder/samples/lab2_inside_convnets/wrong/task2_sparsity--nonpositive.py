# WRONG (Task 2): counts every value <= 0 as a zero: right after a ReLU, wrong on activations that hold negative values.
def activation_sparsity(activations: dict[str, torch.Tensor]) -> dict[str, float]:
    return {name: float((act <= 0).float().mean()) for name, act in activations.items()}
