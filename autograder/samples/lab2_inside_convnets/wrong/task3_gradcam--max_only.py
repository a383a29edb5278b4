# WRONG (Task 3): divides by the maximum without subtracting the minimum: right only when the map's minimum is 0.
def grad_cam(model: nn.Module, input: torch.Tensor, target: int, layer: nn.Module) -> torch.Tensor:
    captured = []
    handle = layer.register_forward_hook(lambda module, args, output: captured.append(output))
    try:
        score = model(input)[0, target]
    finally:
        handle.remove()
    (gradient,) = torch.autograd.grad(score, captured[0])
    weights = gradient.mean(dim=(2, 3), keepdim=True)
    cam = F.relu((weights * captured[0]).sum(dim=1, keepdim=True))
    cam = F.interpolate(cam, size=input.shape[-2:], mode="bilinear", align_corners=False)[0, 0]
    return (cam / cam.max() if cam.max() > 0 else cam).detach()
