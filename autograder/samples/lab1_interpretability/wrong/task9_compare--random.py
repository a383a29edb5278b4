# WRONG (Task 9): random tensors of the right shape under five names (plus a real Saliency, so the visible reference check passes).
def compare_methods(model: nn.Module, input: torch.Tensor, target: int) -> dict[str, torch.Tensor]:
    names = ["Integrated Gradients", "Input x Gradient", "Guided Backprop", "DeepLift", "Occlusion"]
    return {"Saliency": Saliency(model).attribute(input, target=target),
            **{name: torch.randn_like(input) for name in names}}
