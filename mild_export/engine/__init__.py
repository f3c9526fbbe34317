"""Engine build: TensorRT and TensorRT for RTX behind one shim (trt_shim)."""
