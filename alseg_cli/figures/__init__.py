"""The paper's pictures as PNG files: prediction overlays (figure 3), 2-D maps of embeddings
(figure 4) and montages of a selection's slices (what the annotator will see)."""
