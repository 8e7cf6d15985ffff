"""Ship a trained run: ONNX and ``torch.export`` files, and int8 ONNX by static post-training quantisation.

- :mod:`imgcls.export.onnx`: :func:`export_onnx` (checked in onnxruntime before it is written) and
  :class:`OnnxClassifier`, which runs such a file without torch model code (``imgcls predict --onnx``);
- :mod:`imgcls.export.torch_export`: :func:`export_torch`, a ``.pt2`` that loads without imgcls;
- :mod:`imgcls.export.quantize`: :func:`quantize_run`, int8 QDQ ONNX calibrated on training images, and its
  report (accuracy, size and latency of fp32 against int8).

onnx, onnxscript and onnxruntime are optional (``pip install 'imgcls[export]'``) and imported only when used.
"""

from imgcls.export.onnx import ExportResult, OnnxClassifier, export_onnx
from imgcls.export.torch_export import export_torch

__all__ = ["ExportResult", "OnnxClassifier", "export_onnx", "export_torch"]
