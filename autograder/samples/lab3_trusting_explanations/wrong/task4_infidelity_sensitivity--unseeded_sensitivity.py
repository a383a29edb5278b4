# WRONG (Task 4): sensitivity_max's perturbations are not seeded.
def explanation_metrics(model: nn.Module, input: torch.Tensor, target: int, methods: dict,
                        n_perturb: int = 8, sigma: float = 0.1, radius: float = 0.02, seed: int = 0,
                        progress: bool = False) -> dict:
    """Infidelity and max-sensitivity of each explanation method (Yeh et al., 2019), with Captum.

    For each method, in the order of ``methods``:

    - maps = method(model, input, target), N x H x W; attributions = the maps on every colour
      channel, maps.unsqueeze(1).expand_as(input), N x 3 x H x W;
    - infidelity(model, perturb, input, attributions, target=target, n_perturb_samples=n_perturb,
      normalize=True), where perturb(inputs) draws noise = sigma * torch.randn(inputs.shape,
      generator=generator) from generator = torch.Generator().manual_seed(seed), made afresh for
      each method, and returns (noise, inputs - noise);
    - torch.manual_seed(seed), then sensitivity_max(explain, input, perturb_radius=radius,
      n_perturb_samples=n_perturb, target=target) with Captum's default perturbation (uniform
      in the L-infinity ball of radius ``radius``), where explain(inputs, target) takes the
      tensor out of the 1-tuple Captum passes first (later a tensor), runs
      method(model, x, target) under torch.enable_grad() and returns the 1-tuple (maps,).

    Args:
        model: classifier, N x 3 x H x W -> N x classes (logits), in eval mode.
        input: N x 3 x H x W batch.
        target: class index explained (and scored) for every row.
        methods: {name: method}, each a callable (model, input N x 3 x H x W, target) -> N x H x W,
            e.g. the Explainers of course_lib.explain.explanation_methods or edge_detector.
        n_perturb: perturbations per row, for both metrics.
        sigma: standard deviation of infidelity's Gaussian noise, in the input's units.
        radius: sensitivity_max's perturbation radius.
        seed: seed of both metrics' perturbations.
        progress: draw a progress bar over the methods.
    Returns:
        {name: {"infidelity": float, "sensitivity": float}}: Captum's per-row scores averaged
        over the N rows (lower is better for both).
    """
    results = {}
    for name, method in tqdm(methods.items(), desc="metrics", unit="method", disable=not progress):
        maps = method(model, input, target)                  # N x H x W
        attributions = maps.unsqueeze(1).expand_as(input)    # N x 3 x H x W, the same on each channel
        generator = torch.Generator().manual_seed(seed)

        def perturb(inputs, generator=generator):
            noise = sigma * torch.randn(inputs.shape, generator=generator)
            return noise, inputs - noise

        infid = infidelity(model, perturb, input, attributions, target=target,
                           n_perturb_samples=n_perturb, normalize=True)

        def explain(inputs, target, method=method):
            x = inputs[0] if isinstance(inputs, tuple) else inputs
            with torch.enable_grad():  # sensitivity_max runs under no_grad; Grad-CAM needs gradients
                return (method(model, x, target),)

        sens = sensitivity_max(explain, input, perturb_radius=radius, n_perturb_samples=n_perturb,
                               target=target)
        results[name] = {"infidelity": float(infid.mean()), "sensitivity": float(sens.mean())}
    return results
