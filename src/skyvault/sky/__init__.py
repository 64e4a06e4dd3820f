"""Spherical geometry and HEALPix coverage: regions to partitions and index ranges."""
