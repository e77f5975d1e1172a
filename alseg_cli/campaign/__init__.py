"""Annotation campaigns on a hospital's own scans: export the picked slices, predict on new scans."""
