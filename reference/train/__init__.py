"""Training MILD's dual LoRA sets and shared modules (Algorithm 2 with DESIGN.md section 1).

config      TrainConfig presets (`paper`, `tiny`) and the stage list
schedule    which parameter groups train at a step, and lambda_t (Eq. 4)
losses      Eq. 2-4 and the region-aware boundary terms
batch       samples -> the layered UNet's inputs, built as the pipeline builds them
state       resumable data order and RNG states
checkpoint  atomic, verified checkpoints
trainer     the loop, on accelerate
"""
