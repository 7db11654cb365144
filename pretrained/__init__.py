"""The shipped model folders, as the package ``toolkit.pretrained`` (data only, no code).

setup.py maps this directory into the installed package (``package_dir``), so a wheel carries the
committed folders (never their ``onnx/`` exports) and an editable install points at this checkout;
:func:`toolkit.registry.pretrained_dir` finds it with ``importlib.resources``.
"""
