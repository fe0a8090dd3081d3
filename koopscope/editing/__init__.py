"""Editing and inpainting on HKD's closed-form trajectory (docs/method.md §8).

- ``options``: region, bands, ratios, levels and time from their command-line spellings (numpy only);
- ``images``: real images from ``dataset:split:index`` or a file;
- ``edit``: mixing latents at one time of the trajectory, closed-form propagation, decoding;
- ``invert``: real images back to noise through the teacher's PF-ODE;
- ``reference``: a real image as an edit reference, by two routes, with its error report;
- ``locality``: where an edit moves the sample and at which scale, over many seeds;
- ``inpaint``: HKD's blended closed-form inpainting and the teacher's RePaint-style baseline;
- ``plots``: the figures.

The package imports nothing itself, so the command line validates its options without loading torch.
"""
