"""Running a model: the model bundle shared by both runtimes (:mod:`.bundle`), the three-stage
pipeline (:mod:`.pipeline`), ONNX Runtime (:mod:`.onnx_runtime`, :mod:`.onnx_session`), export and
int8 quantisation (:mod:`.export`, :mod:`.quantization`; these need torch) and evaluation on either
runtime (:mod:`.evaluation`)."""
