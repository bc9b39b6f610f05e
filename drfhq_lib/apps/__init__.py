"""ipywidgets apps and nothing else: the 2AFC user study, the latent explorer, the filter grid."""
