"""Detection-based erasure scores: a text detector runs on the erased images and its boxes are scored
against the annotated text; the *lower* precision/recall/F, the better the erasure.

Two matching rules, with dataset-level P = Σ precision credit / #detections, R = Σ recall credit / #GT,
F = 2PR/(P+R) as the ICDAR Robust Reading scripts:

* ``deteval`` — ICDAR 2013 DetEval (GaRNet's pipeline) on axis-aligned rectangles with inclusive pixel
  areas: one-to-one matches (area recall >= 0.8, area precision >= 0.4, unique in row and column, centre
  distance < one mean half-diagonal) count 1; one GT split over several detections counts 0.8 recall
  and 0.8 per detection; several GTs covered by one detection count 1 per GT and 1 precision.
* ``iou`` — ICDAR 2015 (ViTEraser): greedy one-to-one matching of polygons with IoU > 0.5.

GT entries marked "don't care" (e.g. ``###``) are ignored together with the detections that fall on
them. The detector is pluggable: anything that maps images to lists of polygons; the zoo's is CRAFT
(``zoo.create_model("craft", pretrained=True)``, GaRNet's detector), used by :class:`DetectorScorer`
(``tools/eval.py detector=craft``) and ``tools/score.py --detector craft``.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import numpy as np
import torch

from zoo.metrics import Scorer

Detector = Callable[[np.ndarray], Sequence[np.ndarray]]  # uint8 HxWx3 -> polygons (K,2)

DETEVAL_RECALL, DETEVAL_PRECISION, DETEVAL_CENTER = 0.8, 0.4, 1.0
SPLIT_WEIGHT, MERGE_WEIGHT = 0.8, 1.0
IOU_THRESHOLD, DONT_CARE_OVERLAP = 0.5, 0.5


def to_rectangle(polygon: np.ndarray) -> np.ndarray:
    """(K,2) polygon or (4,) xyxy -> (4,) xmin, ymin, xmax, ymax."""
    polygon = np.asarray(polygon, np.float64)
    if polygon.ndim == 1:
        return polygon[:4]
    return np.concatenate([polygon.min(0), polygon.max(0)])


def _inclusive_area(r: np.ndarray) -> float:
    return float((r[2] - r[0] + 1) * (r[3] - r[1] + 1))


def _inclusive_intersection(a: np.ndarray, b: np.ndarray) -> float:
    dx = min(a[2], b[2]) - max(a[0], b[0]) + 1
    dy = min(a[3], b[3]) - max(a[1], b[1]) + 1
    return float(dx * dy) if dx >= 0 and dy >= 0 else 0.0


@dataclass
class ImageMatch:
    recall_credit: float
    precision_credit: float
    gt_count: int
    det_count: int


def ignored_sets(
    gt: Sequence[np.ndarray],
    det: Sequence[np.ndarray],
    dont_care: Sequence[bool] | None,
    covered: Callable[[np.ndarray, np.ndarray], float],
    threshold: float,
) -> tuple[set[int], set[int]]:
    """Don't-care GT indices, and the detections whose area lies more than ``threshold`` inside one
    (``covered(gt, det)`` = intersection / detection area)."""
    ignored_gt = {i for i, flag in enumerate(dont_care or []) if flag}
    ignored_det = {j for j, d in enumerate(det) if any(covered(gt[i], d) > threshold for i in ignored_gt)}
    return ignored_gt, ignored_det


def _rectangle_coverage(g: np.ndarray, d: np.ndarray) -> float:
    area = _inclusive_area(d)
    return _inclusive_intersection(g, d) / area if area > 0 else 0.0


def _polygon_coverage(g: np.ndarray, d: np.ndarray) -> float:
    area = polygon_area(d)
    return polygon_area(_clip(g, d)) / area if area > 0 else 0.0


def deteval_image(
    gt: Sequence[np.ndarray], det: Sequence[np.ndarray], dont_care: Sequence[bool] | None = None
) -> ImageMatch:
    """ICDAR 2013 DetEval on one image (rectangles, inclusive pixel areas)."""
    gt = [to_rectangle(g) for g in gt]
    det = [to_rectangle(d) for d in det]
    ignored_gt, ignored_det = ignored_sets(gt, det, dont_care, _rectangle_coverage, DETEVAL_PRECISION)
    recall_credit = precision_credit = 0.0
    if gt and det:
        inter = np.array([[_inclusive_intersection(g, d) for d in det] for g in gt])
        gt_area = np.array([_inclusive_area(g) for g in gt])[:, None]
        det_area = np.array([_inclusive_area(d) for d in det])[None, :]
        recall = np.divide(inter, gt_area, out=np.zeros_like(inter), where=gt_area > 0)
        precision = np.divide(inter, det_area, out=np.zeros_like(inter), where=det_area > 0)
        strong = (recall >= DETEVAL_RECALL) & (precision >= DETEVAL_PRECISION)
        gt_done, det_done = np.zeros(len(gt), bool), np.zeros(len(det), bool)

        def center_close(g: np.ndarray, d: np.ndarray) -> bool:
            centers = [(r[:2] + (r[2:] - r[:2] + 1) / 2) for r in (g, d)]
            diagonals = [np.hypot(*(r[2:] - r[:2] + 1)) for r in (g, d)]
            return 2 * np.hypot(*(centers[0] - centers[1])) / sum(diagonals) < DETEVAL_CENTER

        for i in range(len(gt)):  # one-to-one
            for j in range(len(det)):
                if gt_done[i] or det_done[j] or i in ignored_gt or j in ignored_det:
                    continue
                if strong[i, j] and strong[i].sum() == 1 and strong[:, j].sum() == 1 and center_close(gt[i], det[j]):
                    gt_done[i] = det_done[j] = True
                    recall_credit += 1
                    precision_credit += 1
        for i in range(len(gt)):  # one GT split over several detections
            if i in ignored_gt or gt_done[i]:
                continue
            parts = [
                j
                for j in range(len(det))
                if not det_done[j] and j not in ignored_det and precision[i, j] >= DETEVAL_PRECISION
            ]
            if parts and recall[i, parts].sum() >= DETEVAL_RECALL:
                gt_done[i] = True
                det_done[parts] = True
                recall_credit += SPLIT_WEIGHT
                precision_credit += SPLIT_WEIGHT * len(parts)
        for j in range(len(det)):  # several GTs covered by one detection
            if j in ignored_det or det_done[j]:
                continue
            covered = [
                i for i in range(len(gt)) if not gt_done[i] and i not in ignored_gt and recall[i, j] >= DETEVAL_RECALL
            ]
            if covered and precision[covered, j].sum() >= DETEVAL_PRECISION:
                det_done[j] = True
                gt_done[covered] = True
                recall_credit += MERGE_WEIGHT * len(covered)
                precision_credit += MERGE_WEIGHT
    return ImageMatch(recall_credit, precision_credit, len(gt) - len(ignored_gt), len(det) - len(ignored_det))


def polygon_signed_area(polygon: np.ndarray) -> float:
    """Shoelace formula; positive for counter-clockwise vertices (in x-right, y-up axes)."""
    x, y = polygon[:, 0], polygon[:, 1]
    return 0.5 * float(np.dot(x, np.roll(y, -1)) - np.dot(y, np.roll(x, -1)))


def polygon_area(polygon: np.ndarray) -> float:
    return abs(polygon_signed_area(polygon)) if len(polygon) >= 3 else 0.0


def _as_polygon(shape: np.ndarray) -> np.ndarray:
    shape = np.asarray(shape, np.float64)
    if shape.ndim == 1:
        x0, y0, x1, y1 = shape[:4]
        return np.array([[x0, y0], [x1, y0], [x1, y1], [x0, y1]])
    return shape


def _clip(subject: np.ndarray, clip: np.ndarray) -> np.ndarray:
    """Sutherland-Hodgman: ``subject`` ∩ convex ``clip`` (both (K,2))."""
    if polygon_signed_area(clip) < 0:
        clip = clip[::-1]
    output = list(subject)
    for a, b in zip(clip, np.roll(clip, -1, axis=0)):
        if not output:
            break
        edge = b - a
        inputs, output = output, []

        def inside(p: np.ndarray, edge: np.ndarray = edge, a: np.ndarray = a) -> bool:
            return edge[0] * (p[1] - a[1]) - edge[1] * (p[0] - a[0]) >= 0

        for p, q in zip(inputs, inputs[1:] + inputs[:1]):
            if inside(q):
                if not inside(p):
                    output.append(_intersect(p, q, a, b))
                output.append(q)
            elif inside(p):
                output.append(_intersect(p, q, a, b))
    return np.asarray(output).reshape(-1, 2)


def _intersect(p: np.ndarray, q: np.ndarray, a: np.ndarray, b: np.ndarray) -> np.ndarray:
    d1, d2 = q - p, b - a
    denominator = d1[0] * d2[1] - d1[1] * d2[0]
    t = ((a[0] - p[0]) * d2[1] - (a[1] - p[1]) * d2[0]) / denominator
    return p + t * d1


def polygon_iou(a: np.ndarray, b: np.ndarray) -> float:
    """IoU of two polygons; the second must be convex (a detector's quadrilateral or rectangle)."""
    a, b = _as_polygon(a), _as_polygon(b)
    intersection = polygon_area(_clip(a, b)) if len(a) >= 3 and len(b) >= 3 else 0.0
    union = polygon_area(a) + polygon_area(b) - intersection
    return intersection / union if union > 0 else 0.0


def iou_image(
    gt: Sequence[np.ndarray], det: Sequence[np.ndarray], dont_care: Sequence[bool] | None = None
) -> ImageMatch:
    """ICDAR 2015 rule on one image: greedy one-to-one matches with IoU > 0.5."""
    gt = [_as_polygon(g) for g in gt]
    det = [_as_polygon(d) for d in det]
    ignored_gt, ignored_det = ignored_sets(gt, det, dont_care, _polygon_coverage, DONT_CARE_OVERLAP)
    gt_done, det_done, matches = set(), set(), 0
    for i in range(len(gt)):
        for j in range(len(det)):
            if i in gt_done or j in det_done or i in ignored_gt or j in ignored_det:
                continue
            if polygon_iou(gt[i], det[j]) > IOU_THRESHOLD:
                gt_done.add(i)
                det_done.add(j)
                matches += 1
    return ImageMatch(matches, matches, len(gt) - len(ignored_gt), len(det) - len(ignored_det))


RULES = {"deteval": deteval_image, "iou": iou_image}


@dataclass
class DetectionScore:
    """Dataset-level precision/recall/F accumulated over images."""

    rule: str = "deteval"
    matches: list[ImageMatch] = field(default_factory=list)

    def update(
        self, gt: Sequence[np.ndarray], det: Sequence[np.ndarray], dont_care: Sequence[bool] | None = None
    ) -> ImageMatch:
        if self.rule not in RULES:
            raise ValueError(f"rule must be one of {sorted(RULES)}, got {self.rule!r}")
        match = RULES[self.rule](gt, det, dont_care)
        self.matches.append(match)
        return match

    def compute(self) -> dict[str, float]:
        gt_count = sum(m.gt_count for m in self.matches)
        det_count = sum(m.det_count for m in self.matches)
        recall = sum(m.recall_credit for m in self.matches) / gt_count if gt_count else 0.0
        precision = sum(m.precision_credit for m in self.matches) / det_count if det_count else 0.0
        f = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
        return {"precision": precision, "recall": recall, "f": f}


class DetectorScorer(Scorer):
    """``tools/eval.py ... detector=craft``: ``detect`` runs on each erased output, its words are scored
    against the sample's annotated text boxes with ``rule``; ``compute`` gives ``det_precision``,
    ``det_recall`` and ``det_fmeasure`` (lower is better: less text left to find)."""

    def __init__(self, detect: Callable[[torch.Tensor], list[list[np.ndarray]]], rule: str = "deteval"):
        super().__init__(("det_words",))
        self.detect, self.score = detect, DetectionScore(rule)

    def score_batch(self, output, target, image, mask, names, boxes) -> dict[str, list[float]]:
        if boxes is None:
            raise ValueError(
                "detection scores need the annotated text boxes of each sample (a dataset with text annotations)"
            )
        counts = []
        for sample, gt in zip(output, boxes):
            words = self.detect(sample[None])[0]
            self.score.update(
                [np.asarray(box, np.float64) for box in np.asarray(gt.cpu() if isinstance(gt, torch.Tensor) else gt)],
                words,
            )
            counts.append(float(len(words)))
        return {"det_words": counts}

    def compute(self) -> dict[str, float]:
        result = self.score.compute()
        return {"det_precision": result["precision"], "det_recall": result["recall"], "det_fmeasure": result["f"]}
