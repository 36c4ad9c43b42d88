"""Python-backend models copied into the generated Triton repository (``serving.triton_repo``).

Each file here becomes ``<repo>/<model>/1/model.py`` and runs inside Triton's python backend
stub (``import triton_python_backend_utils``), not in this package. They need only numpy and
``tokenizers`` (plus onnxruntime for the optional python-onnxruntime model step).
"""
