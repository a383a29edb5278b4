# WRONG (Task 5): hard-coded to the layer and channel of the visible test (features[5], channel 4), whatever it is asked.
def visualize_filter(model: nn.Module, layer: nn.Module, filter_index: int, iterations: int = 50,
                     lr: float = 0.1, *, image_size: int = 128, seed: int = 0,
                     progress: bool = False) -> np.ndarray:
    generator = torch.Generator().manual_seed(seed)
    noise = torch.randn(1, 3, image_size, image_size, generator=generator)
    image = (0.5 + 0.05 * noise).clamp(0, 1).requires_grad_(True)
    optimizer = torch.optim.Adam([image], lr=lr)
    for _ in range(iterations):
        activation = forward_until(model, model.features[5], normalize(image))
        loss = -activation[0, 4].mean()
        optimizer.zero_grad()
        image.grad = torch.autograd.grad(loss, image)[0]
        optimizer.step()
        with torch.no_grad():
            image.clamp_(0, 1)
    return image.detach()[0].permute(1, 2, 0).numpy()
