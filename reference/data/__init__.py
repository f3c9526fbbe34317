"""Paired data for MILD (DESIGN.md section 2): the synthetic generator and the dataset folder.

skeleton  OpenPose-18 keypoints, limbs, LIP parsing ids, random articulated poses
raster    hard-edged shapes from distance fields (exact masks, no anti-aliasing)
synth     procedural scenes with figures and occluders; `make_sample(seed)` -> `SynthSample`
folder    the dataset folder layout and its atomic writer
dataset   `MildDataset`: the validated folder reader that training opens
"""
