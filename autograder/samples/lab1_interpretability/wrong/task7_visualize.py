# WRONG (Task 7): one heat map only: the other signs and methods are not explored.
VISUALIZATIONS = [("heat_map", "all")]
