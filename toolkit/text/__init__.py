"""The text layer: normalisation (with the map back to the original text), tokenisation with
offsets, windows for long texts, and the one text-to-model-input path (:mod:`toolkit.text.encode`)."""
