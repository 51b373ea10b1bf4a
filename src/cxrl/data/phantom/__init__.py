"""The phantom: a procedural chest radiograph simulator writing real dataset layouts (see docs/phantom.md).

``write_dataset(out, n, ...)`` writes a CheXpert- or MIMIC-layout dataset with ground truth beside it;
``plan_dataset`` draws the specs (patients, labels, reports' truth) and ``render(spec)`` draws one image.
"""

from cxrl.data.phantom.layouts import truth_mask, write_dataset
from cxrl.data.phantom.render import MASK_BITS, Rendering, render
from cxrl.data.phantom.sampling import ImageSpec, plan_dataset

__all__ = ["MASK_BITS", "ImageSpec", "Rendering", "plan_dataset", "render", "truth_mask", "write_dataset"]
