"""drfhq: the runnable companion of "Enhancing the Authenticity of Rendered Portraits with
Identity-Consistent Transfer Learning" (Wang, Wu, Yang, Liu, Jin).

The package follows the pipeline (README's data-flow picture)::

    data/       images, landmarks, FFHQ alignment and its inverse, datasets, filtering, ADA
    finetune/   identity-consistent transfer learning: G_real -> G_rendering, its losses
    infer/      projection into W+, compositing, the enhance job
    eval/       metrics, inversion baselines, generator variants, figure helpers
    nets/       StyleGAN2 G/D, external networks, the weights registry, safe loading
    miniworld/  paired two-style CC0 renders and the mini networks trained on them
    apps/       ipywidgets apps only (user study, latent explorer, filter grid)
    commands/   the argparse wiring of each `drfhq` command; cli.py dispatches to them
    cli.py errors.py files.py provenance.py allocator.py notebooks.py

Conventions used throughout the package (documented here once):

* Images inside the library are float32 tensors, NCHW, RGB, range [-1, 1]. PIL images and files
  appear only at the edges (alignment, datasets, CLI, notebooks); ``drfhq_lib.data.images`` converts.
* Latents are ``[N, num_ws, w_dim]`` (W+); ``z`` is ``[N, z_dim]``.
* Every function that allocates takes ``device`` (and ``dtype`` where it matters); nothing assumes
  CUDA.
* External pretrained networks are found only through ``drfhq_lib.nets.weights``; each is either the
  official file or a named offline substitute, and artefacts record which one produced them.
"""

__version__ = "0.1.0"
