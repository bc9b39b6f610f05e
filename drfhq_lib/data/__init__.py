"""Dataset preparation (Sec. 3.1): image IO, dlib landmarks, FFHQ alignment and its inverse,
URL download, filtering, packing, and the ADA augmentation pipeline."""
