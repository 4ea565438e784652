"""Try a zoo model in the browser: a Gradio page built from ``zoo.model_info``, not per-model code.

    pip install -e ".[demo]"
    rezoo demo --model deeperaser --weights scut_enstext                # http://127.0.0.1:7860
    rezoo demo --model garnet --weights garnet.pth --port 8080 --host 0.0.0.0
    rezoo demo --model pip --weights run/checkpoints/last.ckpt --tile 512 --device cuda --precision bf16

What the page asks for follows the model's inputs:

* text removal with a mask (deeperaser, garnet): draw over the text with the brush, or upload a mask
  (white = text); "Find text" paints the words the CRAFT detector finds (except the "words to keep",
  read by EasyOCR's English recognizer; ``pip install -e ".[ocr]"`` brings both weights). The result is the
  model's output inside the mask (grown by the "mask dilation" option) and the input elsewhere, so
  nothing outside what was marked changes. A model whose mask is optional (ste) runs without one.
* restoration (pip): a degradation type, or blind (the model's own sensor).
* super-resolution: the output is ``scale`` times larger; the before/after view shows the bicubic
  upsampling next to it.
* recognition: the words read; text detection: the boxes drawn on the image.

The result is shown as a before/after slider with a PNG download. Bad input (no image, no mask drawn,
an image too large to run without tiling, a file that is not an image) is answered in the page. The
app runs offline: no analytics, no share link, no web fonts.
"""

from __future__ import annotations

import argparse
import itertools
import os
import tempfile
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

import zoo
from rezoo.flags import add_model_options, add_run_options, architecture_kwargs, check_device
from rezoo.predictor import Predictor, TextFinder, read_mask
from zoo.errors import InputError, UserError, require_extra
from zoo.imaging.images import save_image, to_tensor, to_uint8
from zoo.imaging.masks import dilate_mask

os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")  # before gradio is imported: the demo runs offline

DEFAULT_MAX_PIXELS = 1 << 20  # without tiling; larger images need --tile (or a higher --max-pixels)
BLIND = "blind (the model's sensor)"
RUN_LABELS = {
    "text_removal": "Erase text",
    "restoration": "Restore",
    "super_resolution": "Super-resolve",
    "recognition": "Read text",
    "text_detection": "Find text",
}


def parse_args(argv: list[str] | None = None, prog: str = "rezoo demo") -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog=prog, description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    add_model_options(parser)
    add_run_options(parser, tile_help="tile size for large images (0: whole image; the page can change it)")
    parser.add_argument(
        "--max-pixels", type=int, default=DEFAULT_MAX_PIXELS, help="largest image (H*W) run without tiling"
    )
    parser.add_argument(
        "--detector-weights",
        default=None,
        help="CRAFT weights for 'Find text' (default: the craft model's default tag)",
    )
    parser.add_argument("--host", default="127.0.0.1", help="address to serve on (0.0.0.0: every interface)")
    parser.add_argument("--port", type=int, default=7860)
    return parser.parse_args(argv)


def image_tensor(array: np.ndarray) -> torch.Tensor:
    """An uploaded image (HxW, HxWx3 or HxWx4 uint8) as (1,3,H,W) RGB in [0,1] (alpha dropped)."""
    if array.ndim == 2:
        array = np.repeat(array[:, :, None], 3, axis=2)
    return to_tensor(array[:, :, :3])[None]


def drawn_mask(layers: list[np.ndarray], size: tuple[int, int]) -> torch.Tensor:
    """The brush strokes of the editor's layers (every painted pixel, alpha > 0) as a (1,1,H,W) mask."""
    mask = torch.zeros(1, 1, *size)
    for layer in layers:
        if layer is None or layer.ndim != 3 or layer.shape[2] != 4:
            continue
        painted = torch.from_numpy(np.ascontiguousarray(layer[:, :, 3] > 0)).float()[None, None]
        if painted.shape[-2:] != size:  # a layer drawn at another canvas size
            painted = F.interpolate(painted, size=size, mode="nearest")
        mask = torch.maximum(mask, painted)
    return mask


class Demo:
    """The page's callbacks over a :class:`~rezoo.predictor.Predictor`; raise :class:`InputError` with the
    message the page shows."""

    def __init__(
        self,
        predictor: Predictor,
        max_pixels: int = DEFAULT_MAX_PIXELS,
        detector_weights: str | None = None,
        out_dir: Path | None = None,
    ):
        self.predictor, self.info = predictor, predictor.info
        self.max_pixels, self.detector_weights = max_pixels, detector_weights
        self.out_dir = Path(out_dir or tempfile.mkdtemp(prefix="rezoo-demo-"))
        self._finder: TextFinder | None = None
        self._counter = itertools.count(1)

    @property
    def takes_mask(self) -> bool:
        return "mask" in self.info.conditions

    @property
    def needs_mask(self) -> bool:
        return "mask" in self.info.required

    def check_size(self, image: torch.Tensor, tile: int) -> None:
        height, width = image.shape[-2:]
        if not tile and height * width > self.max_pixels:
            raise InputError(
                f"the image is {width}x{height} ({height * width:,} pixels); without tiling this demo runs at most "
                f"{self.max_pixels:,} pixels: set a tile size under Options (e.g. 512), or restart it with --tile 512 "
                "or a higher --max-pixels"
            )

    def inputs_of(self, image_value: Any, mask_file: str | None) -> tuple[torch.Tensor, torch.Tensor | None]:
        """The image and the mask (drawn strokes and uploaded mask together) from the page's values."""
        if self.takes_mask:
            value = image_value or {}
            background = value.get("background")
            if background is None:
                raise InputError("upload an image first")
            image = image_tensor(background)
            mask = drawn_mask(value.get("layers") or [], image.shape[-2:])
            if mask_file:
                mask = torch.maximum(mask, read_mask(Path(mask_file), image, "the image"))
            return image, (mask if mask.any() else None)
        if image_value is None:
            raise InputError("upload an image first")
        return image_tensor(image_value), None

    def predict(
        self,
        image: Any,
        mask: str | None = None,
        degradation: str | None = None,
        tile: float | None = 0,
        dilation: float | None = 0,
    ) -> tuple[Any, ...]:
        """Run the model on the page's values (``image``: the editor's or the image's value, ``mask``: an
        uploaded mask file): ((before, after), PNG path) for image outputs, the words for recognizers."""
        image, mask = self.inputs_of(image, mask)
        tile = int(tile or 0)
        if tile and tile <= self.predictor.overlap:
            raise InputError(
                f"the tile size must be larger than the overlap ({self.predictor.overlap} px), or 0 for no tiling"
            )
        self.check_size(image, tile)
        if self.info.recognizer:
            return (self.predictor.model.recognize(image.to(self.predictor.device))[0],)
        if self.info.detector:
            return self._save(image, self.draw_boxes(image))
        if self.needs_mask and mask is None:
            raise InputError("no mask: draw over the text to erase with the brush, or upload a mask (white = text)")
        conditions: dict[str, Any] = {}
        if degradation not in (None, BLIND):
            conditions["degradation"] = self.degradations().index(degradation)
        if mask is not None:  # the model erases the grown mask, as infer does
            mask = dilate_mask(mask, int(dilation or 0))
            conditions["mask"] = mask
        output = self.predictor(image, conditions, tile).cpu()
        output = self.predictor.keep_outside(output, image, mask, tiled=bool(tile))
        before = (
            F.interpolate(image, size=output.shape[-2:], mode="bicubic", align_corners=False).clamp(0, 1)
            if self.info.scale > 1
            else image
        )
        return self._save(before, output)

    def _save(self, before: torch.Tensor, after: torch.Tensor) -> tuple[tuple[np.ndarray, np.ndarray], str]:
        path = self.out_dir / f"{self.info.name}-{next(self._counter):04d}.png"
        save_image(after[0], path)
        return (to_uint8(before[0]), to_uint8(after[0])), str(path)

    def degradations(self) -> list[str]:
        """The degradation classes the model takes, by name (``ModelInfo.condition_values``)."""
        return list(self.info.condition_values.get("degradation", ()))

    def finder(self) -> TextFinder:
        if self._finder is None:
            self._finder = TextFinder(self.predictor.device, self.detector_weights)
        return self._finder

    def draw_boxes(self, image: torch.Tensor) -> torch.Tensor:
        """A text detector's words drawn on the image (red quadrilaterals)."""
        import cv2

        canvas = to_uint8(image[0]).copy()
        for box in self.predictor.model.detect(image.to(self.predictor.device))[0]:
            cv2.polylines(canvas, [np.round(box).astype(np.int32).reshape(-1, 1, 2)], True, (255, 0, 0), 2)
        return to_tensor(canvas)[None]

    def find_text(self, image: Any, keep: str = "") -> dict[str, Any]:
        """'Find text': the editor's value with one layer painting the detected words red, except those
        read as one of the comma-separated ``keep`` words."""
        picture, _ = self.inputs_of(image, None)
        mask, boxes, _ = self.finder().mask(picture, 0, [word.strip() for word in (keep or "").split(",")])
        if not boxes:
            raise InputError("no text to erase was found in the image; draw the mask with the brush instead")
        painted = mask[0, 0].numpy() > 0
        layer = np.zeros((*painted.shape, 4), np.uint8)
        layer[painted] = (255, 0, 0, 255)
        return {"background": image["background"], "layers": [layer], "composite": None}


def _page_errors(callback: Any) -> Any:
    """The callback with user errors shown in the page (a Gradio error toast), not as a failed request."""
    import gradio as gr

    def wrapped(*values: Any) -> Any:
        try:
            return callback(*values)
        except UserError as error:
            raise gr.Error(str(error), print_exception=False) from error

    return wrapped


def build_app(demo: Demo, weights_label: str = "") -> Any:
    """The Gradio Blocks of ``demo``'s model: inputs from ``model_info``, one ``predict`` endpoint
    (and ``find_text`` for models that take a mask)."""
    gr = require_extra("gradio", "demo", "rezoo demo")
    info = demo.info
    task, name = info.task, info.name
    with gr.Blocks(title=f"rezoo: {name}", analytics_enabled=False) as app:
        scale = f", {info.scale}x" if info.scale > 1 else ""
        gr.Markdown(
            f"## rezoo · {name}\n{task.replace('_', ' ')}{scale} · {info.params:,} parameters · "
            f"weights: {weights_label or 'default'}"
        )
        inputs: list[Any] = []
        with gr.Row():
            with gr.Column():
                if demo.takes_mask:
                    hint = (
                        "draw over the text to erase"
                        if demo.needs_mask
                        else "draw over the text to erase, or leave it: the model finds text itself"
                    )
                    image_in = gr.ImageEditor(
                        label=f"image ({hint})",
                        type="numpy",
                        format="png",
                        image_mode="RGBA",
                        sources=("upload", "clipboard"),
                        brush=gr.Brush(colors=["#ff0000"], color_mode="fixed", default_size=16),
                        layers=False,
                        transforms=(),
                        elem_id="image",
                    )
                    mask_in = gr.File(
                        label="or upload a mask (white = text)", file_types=["image"], type="filepath", elem_id="mask"
                    )
                    inputs += [image_in, mask_in]
                else:
                    image_in = gr.Image(
                        label="image",
                        type="numpy",
                        image_mode="RGB",
                        format="png",
                        sources=("upload", "clipboard"),
                        elem_id="image",
                    )
                    inputs += [image_in]
                if "degradation" in info.inputs:
                    choices = ([BLIND] if demo.predictor.blind else []) + demo.degradations()
                    inputs.append(gr.Dropdown(choices, value=choices[0], label="degradation", elem_id="degradation"))
                with gr.Accordion("Options", open=False):
                    inputs.append(
                        gr.Number(
                            value=demo.predictor.tile,
                            precision=0,
                            minimum=0,
                            label="tile size (0: whole image; set one for large images)",
                            elem_id="tile",
                        )
                    )
                    if demo.takes_mask:
                        inputs.append(
                            gr.Slider(
                                0,
                                32,
                                value=0,
                                step=1,
                                label="mask dilation (px): grow the mask before erasing; "
                                "the output replaces the input inside it",
                                elem_id="dilation",
                            )
                        )
                        keep = gr.Textbox(
                            label="Find text: words to keep (comma-separated; read by EasyOCR's English recognizer)",
                            elem_id="keep",
                        )
                with gr.Row():
                    if demo.takes_mask:
                        find = gr.Button("Find text", elem_id="find-text")
                    run = gr.Button(RUN_LABELS[task], variant="primary", elem_id="run")
            with gr.Column():
                if task == "recognition":
                    outputs = [gr.Textbox(label="text", elem_id="result")]
                else:
                    outputs = [
                        gr.ImageSlider(label="before / after", type="numpy", format="png", elem_id="result"),
                        gr.File(label="result (PNG)", elem_id="download"),
                    ]
        keys = ["image", "mask", "degradation", "tile", "dilation"]
        names = keys[:2] if demo.takes_mask else keys[:1]
        names += (
            (["degradation"] if "degradation" in info.inputs else [])
            + ["tile"]
            + (["dilation"] if demo.takes_mask else [])
        )

        def predict(*values: Any) -> Any:
            result = demo.predict(**dict(zip(names, values, strict=True)))
            return result[0] if len(outputs) == 1 else result

        run.click(_page_errors(predict), inputs, outputs, api_name="predict")
        if demo.takes_mask:
            find.click(_page_errors(demo.find_text), [image_in, keep], [image_in], api_name="find_text")
    return app


def launch(
    app: Any, host: str = "127.0.0.1", port: int = 7860, block: bool = True, allowed: list[Path] | None = None
) -> Any:
    """Serve ``app`` offline (no share link, analytics, web fonts or server-side rendering)."""
    gr = require_extra("gradio", "demo", "rezoo demo")
    theme = gr.themes.Default(
        font=["ui-sans-serif", "system-ui", "sans-serif"], font_mono=["ui-monospace", "monospace"]
    )
    return app.launch(
        server_name=host,
        server_port=port,
        share=False,
        show_error=True,
        ssr_mode=False,
        prevent_thread_lock=not block,
        theme=theme,
        allowed_paths=[str(p) for p in allowed or []],
        quiet=True,  # main() prints the address; Gradio would add its hint to set share=True
    )


def main(argv: list[str] | None = None, prog: str = "rezoo demo") -> None:
    args = parse_args(argv, prog)
    check_device(args.device, args.precision)
    require_extra("gradio", "demo", "rezoo demo")
    kwargs = architecture_kwargs(args.set)
    predictor = Predictor(args.model, args.weights, args.device, args.precision, args.tile, args.overlap, **kwargs)
    demo = Demo(predictor, args.max_pixels, args.detector_weights)
    app = build_app(demo, args.weights or zoo.model_info(args.model).default_tag or "")
    print(f"rezoo demo: {args.model} on http://{args.host}:{args.port} (Ctrl+C to stop)")
    launch(app, args.host, args.port, block=True, allowed=[demo.out_dir])


if __name__ == "__main__":
    main()
