"""Defaults of the `train` config block (owned by genret_jax.train).

Every key is documented in docs/training.md. Sequence lengths come from the
`tasks` block (max_input_length / max_target_length), the compute dtype from
`model.dtype` and the mesh from the `mesh` block.
"""

import ml_collections


def default_config() -> ml_collections.ConfigDict:
  c = ml_collections.ConfigDict()
  c.num_steps = 300
  c.batch_size = 64           # global batch (all hosts together), packed rows
  c.seed = 0                  # parameter init, dropout and data order
  c.pack = True               # seqio EncDecFeatureConverter packing
  c.train_split = "train"
  c.input_shards = 0          # data shards the global batch is made of; 0 =
                              # gcd(batch_size, global device count), the same for any
                              # number of processes (a resumed run keeps its checkpoint's)
  # Optimizer.
  c.optimizer = "adamw"       # adamw | adafactor
  c.learning_rate = 3e-3      # peak learning rate (paper scale: 1e-3)
  c.schedule = "constant"     # constant | rsqrt | cosine (each after a linear warmup);
                              # paper scale: cosine
  c.warmup_steps = 20
  c.cosine_end_factor = 0.0   # cosine decays to learning_rate * this
  c.weight_decay = 0.01       # decoupled (AdamW) / Adafactor weight_decay_rate
  c.adam_b1 = 0.9
  c.adam_b2 = 0.999
  c.adam_eps = 1e-8
  c.adafactor_decay_rate = 0.8
  c.adafactor_momentum = 0.0  # 0 = no first moment (the T5 default)
  c.grad_clip_norm = 1.0      # global-norm clipping; 0 = off
  c.grad_accum_steps = 1      # micro-batches per step (batch_size must divide)
  # Loss.
  c.z_loss = 1e-4             # T5X z-loss coefficient on log(Z)^2; 0 = off
  c.label_smoothing = 0.0
  # Logging, evaluation, checkpoints.
  c.log_every = 10            # host fetch of metrics + stdout + TensorBoard
  c.eval_every = 0            # 0 = no periodic evaluation during training
  c.eval_split = "validation"
  c.eval_batches = 0          # 0 = the whole split; else at most this many batches
  c.checkpoint_every = 100    # 0 = only the final step
  c.keep_checkpoints = 3      # latest N kept
  c.keep_best = 0             # also keep the best N by `best_metric` (needs eval_every)
  c.best_metric = "eval_loss"
  c.best_mode = "min"         # min | max
  c.patience = 3              # with eval_every: stop after this many evaluations without
                              # a better best_metric (early stopping); 0 = never
  c.min_delta = 0.005         # a gain of at most this does not restart the patience count
  c.min_steps = 300           # early stopping never stops before this step (and the
                              # pipeline's epochs never train fewer steps): a model first
                              # sits at chance for tens of steps, however few per epoch
  c.async_checkpoints = True
  return c
