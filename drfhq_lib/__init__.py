"""drfhq: the runnable companion of "Enhancing the Authenticity of Rendered Portraits with
Identity-Consistent Transfer Learning" (Wang, Wu, Yang, Liu, Jin).

Conventions used throughout the package (documented here once):

* Images inside the library are float32 tensors, NCHW, RGB, range [-1, 1]. PIL images and files
  appear only at the edges (alignment, datasets, CLI, notebooks); ``drfhq_lib.imageio`` converts.
* Latents are ``[N, num_ws, w_dim]`` (W+); ``z`` is ``[N, z_dim]``.
* Every function that allocates takes ``device`` (and ``dtype`` where it matters); nothing assumes
  CUDA.
* External pretrained networks are found only through ``drfhq_lib.weights``; each is either the
  official file or a named offline substitute, and artefacts record which one produced them.
"""

__version__ = "0.1.0"
