"""Triton python-backend model: LOGITS (FP32 [batch, 2]) → LABEL (INT64 [batch]), argmax.

LABEL is produced with shape [batch] (config: ``dims: [1]``; the python backend passes the [batch] shape through), so
``tritonclient`` sees INT64 [batch] as on every other engine.
"""

import numpy as np
import triton_python_backend_utils as pb_utils  # provided by Triton's python backend


class TritonPythonModel:
    def initialize(self, args):
        pass

    def execute(self, requests):
        responses = []
        for request in requests:
            logits = pb_utils.get_input_tensor_by_name(request, "LOGITS").as_numpy()
            label = np.argmax(logits, axis=-1).astype(np.int64).reshape(-1)
            responses.append(pb_utils.InferenceResponse(output_tensors=[pb_utils.Tensor("LABEL", label)]))
        return responses
