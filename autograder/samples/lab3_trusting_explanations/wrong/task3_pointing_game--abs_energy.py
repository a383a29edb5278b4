# WRONG (Task 3): the energy counts negative values by their absolute value.
def pointing_game(attribution: torch.Tensor, boxes: list, tolerance: int = 0) -> bool:
    """Does the map's maximum fall in one of the class's boxes?

    Args:
        attribution: H x W tensor, any sign (larger = more evidence).
        boxes: list of the class's boxes, each a course_lib.images.Box or a tuple
            (left, top, right, bottom) of pixel coordinates: columns left <= x < right and rows
            top <= y < bottom (right and bottom exclusive, as in attribution[top:bottom, left:right]).
        tolerance: pixels added to every side of each box (0: the box itself). A pixel is in the
            grown box when its Chebyshev distance to the box is at most tolerance:
            left - tolerance <= x < right + tolerance and top - tolerance <= y < bottom + tolerance.
    Returns:
        True when at least one pixel where the map takes its maximum value lies in at least one
        (grown) box, else False. A constant map (all zeros, say) has no peak: False.
    """
    attribution = attribution.detach()
    peak = attribution.max()
    if not bool(peak > attribution.min()):
        return False
    rows, cols = torch.nonzero(attribution == peak, as_tuple=True)
    for left, top, right, bottom in boxes:
        inside = ((cols >= left - tolerance) & (cols < right + tolerance)
                  & (rows >= top - tolerance) & (rows < bottom + tolerance))
        if bool(inside.any()):
            return True
    return False


def pointing_energy(attribution: torch.Tensor, box) -> float:
    """The share of the map's positive part that lies in the box (energy-based pointing game).

    Args:
        attribution: H x W tensor, any sign.
        box: a course_lib.images.Box or a tuple (left, top, right, bottom), right and bottom
            exclusive, inside the map.
    Returns:
        sum of max(attribution, 0) over the box's pixels divided by its sum over the whole map,
        a float in [0, 1]; 0.0 when the map has no positive value.
    """
    positive = attribution.detach().double().abs()
    total = float(positive.sum())
    if total <= 0:
        return 0.0
    left, top, right, bottom = box
    return float(positive[top:bottom, left:right].sum()) / total
