"""Latent explorer app (ipywidgets): one W+ code through G_real, G_rendering and a per-layer
blend of the two, with sliders; nothing else.

The compute (blends, latents, truncation, style mixing, early-stopped previews) is
``drfhq_lib.infer.blend``; projected latents are read by ``drfhq_lib.infer.latent_files``.
``LatentExplorer``'s widgets and last rendered tensors are attributes, so tests drive it by
setting ``.value``.
"""

from __future__ import annotations

import io
import time
from pathlib import Path

import torch

from drfhq_lib.data.images import tensor_to_pil
from drfhq_lib.errors import DrfhqError
from drfhq_lib.infer.blend import (GROUPS, BlendedGenerator, default_preview, explorer_latent,
                                   preview_resolutions, render_preview)
from drfhq_lib.infer.latent_files import list_latents, load_projected


def png_bytes(image: torch.Tensor) -> bytes:
    """PNG of one ``[1, 3, H, W]`` or ``[3, H, W]`` image in [-1, 1]."""
    buffer = io.BytesIO()
    tensor_to_pil(image if image.ndim == 4 else image[None])[0].save(buffer, format="PNG")
    return buffer.getvalue()


class LatentExplorer:
    """Sliders for seed, truncation, coarse / middle / fine blend, mixing seed and crossover, a
    projected latent (``latents_dir`` and a dropdown), preview resolution; shows G_real, the
    blend and G_rendering side by side.

    ``widgets[name]`` are the controls, ``images[name]`` the image widgets (PNG bytes in
    ``.value``), ``last_images[name]`` the rendered ``[1, 3, r, r]`` tensors and ``last_ws`` the
    W+ shown. ``display(explorer.ui)`` in a notebook.
    """

    PANELS = ("real", "mixed", "rendering")

    def __init__(self, G_real, G_rendering, *, latents_dir: str | Path | None = None,
                 labels: tuple[str, str] = ("G_real", "G_rendering"), warning: str = "",
                 preview: int | None = None, device: torch.device | str = "cpu",
                 display_px: int = 256):
        import ipywidgets as w

        self.device = torch.device(device)
        self.blender = BlendedGenerator(G_real, G_rendering)
        self.G_real, self.G_rendering = G_real, G_rendering
        resolutions = preview_resolutions(G_real)
        preview = preview or default_preview(G_real, self.device)
        num_ws = G_real.num_ws
        slider = dict(continuous_update=False, style={"description_width": "110px"})
        self.widgets = {
            "seed": w.IntSlider(0, 0, 9999, description="seed", **slider),
            "truncation": w.FloatSlider(1.0, min=0.0, max=1.0, step=0.05,
                                        description="truncation ψ", **slider),
            **{g: w.FloatSlider(0.5, min=0.0, max=1.0, step=0.05, description=f"{g} blend",
                                **slider) for g in GROUPS},
            "mix_seed": w.IntSlider(1, 0, 9999, description="mixing seed", **slider),
            "crossover": w.IntSlider(num_ws, 0, num_ws, description="crossover layer",
                                     **slider),
            "latents_dir": w.Text(str(latents_dir or ""), description="latents folder",
                                  continuous_update=False, style=slider["style"]),
            "latent": w.Dropdown(options=[("seed (no projected latent)", "")], value="",
                                 description="projected W+", style=slider["style"]),
            "preview": w.Dropdown(options=resolutions, value=preview,
                                  description="preview px", style=slider["style"]),
        }
        titles = {"real": labels[0], "mixed": "blend", "rendering": labels[1]}
        self.images = {p: w.Image(format="png", width=display_px, height=display_px)
                       for p in self.PANELS}
        self.titles = {p: w.HTML(f"<b>{titles[p]}</b>") for p in self.PANELS}
        self.status = w.HTML()
        self.last_images: dict[str, torch.Tensor] = {}
        self.last_ws: torch.Tensor | None = None
        self.last_seconds = 0.0
        self.error = ""
        self._cache_key = None
        self._refresh_latents()
        for name, widget in self.widgets.items():
            handler = self._on_latents_dir if name == "latents_dir" else self._on_change
            widget.observe(handler, names="value")
        panels = [w.VBox([self.titles[p], self.images[p]]) for p in self.PANELS]
        banner = [w.HTML(f"<b style='color:#b00'>{warning}</b>")] if warning else []
        self.ui = w.VBox([*banner, w.HBox(panels),
                          w.HBox([w.VBox([self.widgets[k] for k in
                                          ("seed", "truncation", "mix_seed", "crossover")]),
                                  w.VBox([self.widgets[g] for g in GROUPS]),
                                  w.VBox([self.widgets[k] for k in
                                          ("latents_dir", "latent", "preview")])]),
                          self.status])
        self.update()

    def _ipython_display_(self):
        from IPython.display import display

        display(self.ui)

    def _refresh_latents(self) -> None:
        files = list_latents(self.widgets["latents_dir"].value)
        options = [("seed (no projected latent)", "")] + [(p.stem, str(p)) for p in files]
        dropdown = self.widgets["latent"]
        keep = dropdown.value if dropdown.value in [v for _, v in options] else ""
        dropdown.options = options
        dropdown.value = keep

    def _on_latents_dir(self, _change) -> None:
        self._refresh_latents()
        self.update()

    def _on_change(self, _change) -> None:
        self.update()

    def current_latent(self) -> torch.Tensor:
        v = {k: widget.value for k, widget in self.widgets.items()}
        projected = load_projected(v["latent"], self.G_real) if v["latent"] else None
        return explorer_latent(self.G_real, v["seed"], v["truncation"], v["mix_seed"],
                               v["crossover"], projected, self.device)

    def update(self) -> dict[str, torch.Tensor]:
        """Render the three panels for the widgets' current values (also called on change)."""
        start = time.perf_counter()
        try:
            ws = self.current_latent()
        except DrfhqError as err:  # a bad latent file: say so, keep the last picture
            self.error = str(err)
            self.status.value = f"<span style='color:#b00'>{err}</span>"
            return self.last_images
        self.error = ""
        resolution = self.widgets["preview"].value
        key = (resolution, ws.cpu().numpy().tobytes())
        if key != self._cache_key:  # G_real and G_rendering only change with the latent
            self.last_images["real"] = render_preview(self.G_real, ws, resolution).cpu()
            self.last_images["rendering"] = render_preview(self.G_rendering, ws,
                                                           resolution).cpu()
            self._cache_key = key
        self.blender.set_blend(**{g: self.widgets[g].value for g in GROUPS})
        self.last_images["mixed"] = render_preview(self.blender.G, ws, resolution).cpu()
        self.last_ws = ws
        for panel in self.PANELS:
            self.images[panel].value = png_bytes(self.last_images[panel])
        self.last_seconds = time.perf_counter() - start
        self.status.value = (f"{resolution} px preview in {self.last_seconds * 1000:.0f} ms; "
                             + ", ".join(f"{g} {self.blender.factors[g]:.2f}" for g in GROUPS))
        return self.last_images
