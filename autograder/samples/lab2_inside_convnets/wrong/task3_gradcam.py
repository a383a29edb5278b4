# WRONG (Task 3): weights the channels by their mean activation (plain CAM-like), ignoring the gradient and so the target class.
def grad_cam(model: nn.Module, input: torch.Tensor, target: int, layer: nn.Module) -> torch.Tensor:
    captured = []
    handle = layer.register_forward_hook(lambda module, args, output: captured.append(output.detach()))
    with torch.no_grad():
        model(input)
    handle.remove()
    activation = captured[0]
    weights = activation.mean(dim=(2, 3), keepdim=True)
    cam = F.relu((weights * activation).sum(dim=1, keepdim=True))
    cam = F.interpolate(cam, size=input.shape[-2:], mode="bilinear", align_corners=False)[0, 0]
    cam = cam - cam.min()
    return cam / cam.max() if cam.max() > 0 else cam
