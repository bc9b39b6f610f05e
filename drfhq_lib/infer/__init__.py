"""Inference (Sec. 3.3, 8): projection into W+ of G_rendering, rendering with G_real,
compositing (face mask, erosion, blur, Eq. 5) and the end-to-end enhance job."""
