"""Training: recipes (:mod:`.recipe`), features (:mod:`.features`), the joint multi-task loop
(:mod:`.loop`) and its resumable state (:mod:`.state`), fine-tuning on your own files
(:mod:`.finetune`), diagnostics and the report, hyper-parameter tuning, data-parallel training
(:mod:`.distributed`) and continued MLM pretraining (:mod:`.pretrain`)."""
