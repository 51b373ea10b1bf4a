"""Explanations of trained encoders: saliency maps, galleries and zero-shot saliency segmentation."""
