"""The model and its folder: the encoder wrapper (:mod:`.encoder`), :class:`~.multitask.MultiTaskModel`
(encoder + heads, save/load), the manifest ``toolkit.yaml`` (:mod:`.manifest`, torch-free) and the
folder's atomic writes and checks on load (:mod:`.folder`, torch-free)."""
