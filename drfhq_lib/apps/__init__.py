"""ipywidgets apps and nothing else: the 2AFC user study and the latent explorer."""
