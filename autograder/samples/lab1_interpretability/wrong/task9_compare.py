# WRONG (Task 9): every method explains class 0, whatever target is asked for.
def compare_methods(model: nn.Module, input: torch.Tensor, target: int) -> dict[str, torch.Tensor]:
    baseline = torch.zeros_like(input)
    return {
        "Saliency": Saliency(model).attribute(input, target=0),
        "Integrated Gradients": IntegratedGradients(model).attribute(
            input, baselines=baseline, target=0, n_steps=50),
        "Input x Gradient": InputXGradient(model).attribute(input, target=0),
        "Guided Backprop": GuidedBackprop(model).attribute(input, target=0),
        "DeepLift": DeepLift(model).attribute(input, baselines=baseline, target=0),
    }
