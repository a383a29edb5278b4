# WRONG (Task 5): skips the optimisation and returns the starting noise.
def visualize_filter(model: nn.Module, layer: nn.Module, filter_index: int, iterations: int = 50,
                     lr: float = 0.1, *, image_size: int = 128, seed: int = 0,
                     progress: bool = False) -> np.ndarray:
    generator = torch.Generator().manual_seed(seed)
    noise = torch.randn(1, 3, image_size, image_size, generator=generator)
    image = (0.5 + 0.05 * noise).clamp(0, 1)
    return image[0].permute(1, 2, 0).numpy()
