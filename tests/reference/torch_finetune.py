"""Span fine-tuning written in PyTorch the Hugging Face way: the reference for `train.finetune`.

`torch.optim.AdamW` with weight decay on matrices only (biases and LayerNorm
scales excluded, as the HF Trainer does), `get_linear_schedule_with_warmup`,
`clip_grad_norm_`, and the loss ours computes: the mean over real rows
(weight 1) of (CE(start) + CE(end)) / 2 with the softmax over attended
positions. With `hf_loss` it is the model's own loss instead, whose softmax
also covers padding positions.
"""

from collections.abc import Iterable

import numpy as np
import transformers


def train_steps(torch, model, batches: Iterable[dict[str, np.ndarray]], optim, total_steps: int,
                hf_loss: bool = False) -> list[float]:
  """Trains `model` (a *ForQuestionAnswering) on `batches` (`finetune.feature_batch` dicts);
  `optim` is our `OptimConfig`, `total_steps` the schedule's length. Returns each step's loss."""
  decay = [p for p in model.parameters() if p.ndim > 1]
  rest = [p for p in model.parameters() if p.ndim <= 1]
  optimizer = torch.optim.AdamW([{"params": decay, "weight_decay": optim.weight_decay},
                                 {"params": rest, "weight_decay": 0.0}],
                                lr=optim.learning_rate, betas=(optim.b1, optim.b2), eps=optim.eps)
  schedule = transformers.get_linear_schedule_with_warmup(
      optimizer, int(optim.warmup_fraction * total_steps), total_steps)
  model.train()
  losses = []
  for numpy_batch in batches:
    batch = {k: torch.from_numpy(np.array(v)) for k, v in numpy_batch.items()}
    out = model(input_ids=batch["input_ids_FxL"].long(),
                attention_mask=batch["attention_mask_FxL"].long(),
                token_type_ids=batch["token_type_ids_FxL"].long(),
                start_positions=batch["start_positions_F"].long(),
                end_positions=batch["end_positions_F"].long())
    if hf_loss:
      loss = out.loss
    else:
      valid = batch["attention_mask_FxL"] > 0

      def nll(logits, gold):
        log_p = torch.log_softmax(torch.where(valid, logits, torch.tensor(-1e9)), dim=-1)
        return -log_p.gather(1, gold.long()[:, None])[:, 0]

      loss_B = 0.5 * (nll(out.start_logits, batch["start_positions_F"]) +
                      nll(out.end_logits, batch["end_positions_F"]))
      loss = (loss_B * batch["weight"]).sum() / batch["weight"].sum().clamp(min=1.0)
    optimizer.zero_grad()
    loss.backward()
    torch.nn.utils.clip_grad_norm_(model.parameters(), optim.clip_norm)
    optimizer.step()
    schedule.step()
    losses.append(float(loss.detach()))
  return losses
