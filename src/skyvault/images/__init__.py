"""Image access: the image archive, SODA cutouts and DataLink previews."""
