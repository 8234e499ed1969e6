"""Weights shipped with digitlab.

`rejector.safetensors`: the "not a digit" detector (`digitlab.reject.Rejector`, 26,529
parameters) with its threshold in the metadata. It does not depend on any classifier, so every
run copies it into its checkpoint. Made by `tools/make_rejector.py` (the metadata records the
command, the data and the threshold's false-rejection rate on held-out digits).
"""
