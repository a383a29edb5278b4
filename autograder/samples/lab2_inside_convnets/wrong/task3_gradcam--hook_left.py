# WRONG (Task 3): the right map, but the forward hook is never removed: it stays on the model (and must cost Task 3 only).
def grad_cam(model: nn.Module, input: torch.Tensor, target: int, layer: nn.Module) -> torch.Tensor:
    captured = []
    layer.register_forward_hook(lambda module, args, output: captured.append(output))
    score = model(input)[0, target]
    activation = captured[0]
    (gradient,) = torch.autograd.grad(score, activation)
    weights = gradient.mean(dim=(2, 3), keepdim=True)
    cam = F.relu((weights * activation).sum(dim=1, keepdim=True))
    cam = F.interpolate(cam, size=input.shape[-2:], mode="bilinear", align_corners=False)[0, 0]
    cam = cam - cam.min()
    return (cam / cam.max() if cam.max() > 0 else cam).detach()
