"""From images to CLIP similarities: tiling, views, encoding, scoring, distribution."""
