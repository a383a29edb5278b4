"""Helpers for the CNN interpretability labs.

Small, typed, tested functions the notebooks import, so that students spend their time on the
ideas (the TODO cells) rather than on plumbing. No student work lives here. Modules:
``labels``, ``images``, ``preprocessing``, ``models``, ``hooks``, ``plotting``, ``explain`` (the
library methods Lab 3 tests) and ``testing`` (tiny seeded models for the labs' tests, not
re-exported here).
"""

from course_lib.explain import METHOD_NAMES, Explainer, edge_detector, explanation_methods
from course_lib.hooks import (
    LayerNotReachedError,
    StopForward,
    capture_activations,
    capture_gradients,
    count_hooks,
    forward_progress,
    forward_until,
    layer_summary,
)
from course_lib.images import (
    SAMPLE_IMAGES,
    Box,
    ImageLoadError,
    SampleImage,
    available_samples,
    collage_with_boxes,
    load_image,
    make_collage,
    sample_credit,
    sample_image,
)
from course_lib.labels import (
    NUM_IMAGENET_CLASSES,
    LabelIndexError,
    imagenet_labels,
    index_to_label,
    label_to_index,
)
from course_lib.models import (
    DEFAULT_MODEL,
    MODEL_SPECS,
    ModelSpec,
    ModulePathError,
    UnknownModelError,
    WeightsUnavailableError,
    fetch_weights,
    get_module,
    get_stages,
    get_target_layer,
    load_model,
    prepare_for_attribution,
    standin_weights_active,
    weights_notice,
    write_standin_weights,
)
from course_lib.plotting import (
    compare_attributions,
    compare_signed_maps,
    overlay_attribution,
    show_filter_grid,
    show_image,
    show_image_grid,
    show_trust_table,
)
from course_lib.preprocessing import (
    IMAGENET_MEAN,
    IMAGENET_STD,
    Prediction,
    denormalize,
    imagenet_transform,
    normalize,
    postprocess,
    preprocess_image,
    tensor_to_image,
)

__version__ = "0.1.0"

__all__ = [
    "DEFAULT_MODEL", "IMAGENET_MEAN", "IMAGENET_STD", "METHOD_NAMES", "MODEL_SPECS",
    "NUM_IMAGENET_CLASSES", "SAMPLE_IMAGES", "Box", "Explainer", "ImageLoadError",
    "LabelIndexError", "LayerNotReachedError", "ModelSpec", "ModulePathError", "Prediction",
    "SampleImage", "StopForward", "UnknownModelError", "WeightsUnavailableError",
    "available_samples", "capture_activations", "capture_gradients", "collage_with_boxes",
    "compare_attributions", "compare_signed_maps", "count_hooks", "denormalize", "edge_detector",
    "explanation_methods", "fetch_weights", "forward_progress", "forward_until", "get_module",
    "get_stages", "get_target_layer", "imagenet_labels", "imagenet_transform", "index_to_label",
    "label_to_index", "layer_summary", "load_image", "load_model", "make_collage", "normalize",
    "overlay_attribution", "postprocess", "prepare_for_attribution", "preprocess_image",
    "sample_credit", "sample_image", "show_filter_grid", "show_image", "show_image_grid",
    "show_trust_table", "standin_weights_active", "tensor_to_image", "weights_notice",
    "write_standin_weights",
]
