"""Training: recipes (:mod:`.recipe`), features (:mod:`.features`), batches (:mod:`.batching`),
the joint multi-task loop (:mod:`.loop`), model selection (:mod:`.selection`) and its resumable
state (:mod:`.state`), fine-tuning on your own files
(:mod:`.finetune`), diagnostics and the report, hyper-parameter tuning, data-parallel training
(:mod:`.distributed`), the dtype chosen per CPU or GPU (:mod:`.precision`), continued MLM
pretraining (:mod:`.pretrain`, its corpus :mod:`.mlm_data`, its command :mod:`.pretrain_cli`),
distillation from e5 (:mod:`.distill`) and the packed GPU pretraining job (:mod:`.gpu_job`,
:mod:`.gpu_pack`, :mod:`.shards`)."""
